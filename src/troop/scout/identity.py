"""The scout's RSA key (made on first start, mode 0600) and the General key it pins."""

from __future__ import annotations

import logging
from pathlib import Path

from troop.protocol.crypto import KeyPair
from troop.scout.platform import write_private_file

log = logging.getLogger("troop.scout.identity")


class PinError(Exception):
    pass


def load_or_create_keypair(data_dir: Path, bits: int) -> KeyPair:
    path = data_dir / "scout.key"
    if path.exists():
        return KeyPair.from_pem(path.read_bytes())
    data_dir.mkdir(parents=True, exist_ok=True)
    pair = KeyPair.generate(bits)
    write_private_file(path, pair.to_pem())
    log.info("generated scout key %s", pair.public.fingerprint)
    return pair


class GeneralPin:
    """Trust on first use, or a configured fingerprint; then refuse any other General key."""

    def __init__(self, data_dir: Path, configured: str = "") -> None:
        self.path = data_dir / "general.pin"
        self.configured = configured.strip()

    def expected(self) -> str | None:
        if self.configured:
            return self.configured
        if self.path.exists():
            return self.path.read_text().strip() or None
        return None

    def check(self, fingerprint: str) -> None:
        expected = self.expected()
        if expected is None:
            write_private_file(self.path, fingerprint.encode() + b"\n")
            log.info("pinned the General key %s (first contact)", fingerprint)
        elif expected != fingerprint:
            fix = (
                "set general_fingerprint to the new key only if you replaced the General on purpose"
                if self.configured
                else f"delete {self.path} only if you replaced the General on purpose"
            )
            raise PinError(f"the General's key changed: pinned {expected}, offered {fingerprint}; refusing it ({fix})")
