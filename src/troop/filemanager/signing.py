"""Short-lived signed download URLs: HMAC-SHA256 over what the URL grants, with an expiry.

The General signs; the FileManager verifies. Both hold the same FileManager secret
(DATA_DIR/filemanager.key on a lone General; a shared key file in scale-out).
"""

from __future__ import annotations

import hmac
import os
import re
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlencode

# \Z, not $: `$` also matches before a trailing newline, which would let "<sha>\n" through.
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
DEFAULT_TTL = 300  # seconds a download URL stays valid


def load_or_create_secret(path: Path) -> bytes:
    if path.exists():
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ValueError(f"{path}: a FileManager secret needs at least 32 bytes")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
    return path.read_bytes()


def _mac(secret: bytes, sha: str, exp: int, host: str, nonce: str) -> str:
    msg = "\n".join(("GET", sha, str(exp), host, nonce)).encode()
    return hmac.new(secret, msg, sha256).hexdigest()


@dataclass(frozen=True)
class Grant:
    sha256: str
    exp: int
    host: str
    nonce: str  # hex; also the salt of the blob stream key

    def query(self, secret: bytes) -> str:
        return urlencode({"exp": self.exp, "host": self.host, "nonce": self.nonce,
                          "sig": _mac(secret, self.sha256, self.exp, self.host, self.nonce)})


def grant(sha: str, host: str, ttl: int = DEFAULT_TTL, now: float | None = None) -> Grant:
    return Grant(sha, int((now or time.time()) + ttl), host, os.urandom(16).hex())


def verify(secret: bytes, sha: str, params: dict[str, str], now: float | None = None) -> Grant:
    """The grant a request carries, or ValueError saying what is wrong with it."""
    if not SHA256_HEX.match(sha):
        raise ValueError("not a sha256")
    try:
        exp, host, nonce, sig = int(params["exp"]), params["host"], params["nonce"], params["sig"]
    except (KeyError, ValueError):
        raise ValueError("unsigned or malformed URL") from None
    # Bytes, not str: compare_digest raises TypeError on a str with non-ASCII characters.
    if not hmac.compare_digest(_mac(secret, sha, exp, host, nonce).encode(), sig.encode("utf-8", "replace")):
        raise ValueError("bad signature")
    if exp < (now or time.time()):
        raise ValueError("expired URL")
    if not re.fullmatch(r"[0-9a-f]{32}", nonce):
        raise ValueError("bad nonce")
    return Grant(sha, exp, host, nonce)
