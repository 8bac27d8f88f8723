"""The General's identity (RSA key pair) and its session key B, which rotates."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from troop.protocol.crypto import KeyPair, new_session_key
from troop.protocol.handshake import scout_key_for

log = logging.getLogger("troop.general.identity")


def load_or_create_keypair(path: Path, bits: int) -> KeyPair:
    """Read the General's private key, or make one (mode 0600) on first start."""
    if path.exists():
        return KeyPair.from_pem(path.read_bytes())
    pair = KeyPair.generate(bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pair.to_pem())
    os.replace(tmp, path)
    log.info("generated General key %s at %s", pair.public.fingerprint, path)
    return pair


@dataclass
class SessionKey:
    key_id: int
    secret: bytes

    def for_scout(self, scout_session_key: bytes, hostname: str) -> bytes:
        return scout_key_for(self.secret, scout_session_key, hostname)


class SessionKeys:
    """The current B. A lone General makes a new one on every start and on every rotation."""

    def __init__(self, first_id: int = 1) -> None:
        self.current = SessionKey(first_id, new_session_key())

    def rotate(self) -> SessionKey:
        self.current = SessionKey(self.current.key_id + 1, new_session_key())
        return self.current
