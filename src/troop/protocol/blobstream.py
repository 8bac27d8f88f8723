"""Sealed blob streams: a file's bytes in AES-256-GCM chunks, for downloads over plain HTTP.

A download URL is signed but travels in the clear; the bytes it returns are sealed under a
key that only the FileManager (from its secret and the URL's nonce) and the scout (from its
sealed Task) know. Each chunk: length (u32, big endian) then ciphertext. The nonce is the
chunk index (u64) and a last-chunk flag, so chunks cannot be reordered, dropped or the
stream cut short without the opener noticing.
"""

from __future__ import annotations

import struct

from troop.protocol.crypto import SessionCipher, derive_key
from troop.protocol.errors import SealError

CHUNK = 64 * 1024
TAG = 16
_LEN = struct.Struct(">I")
_MAX_SEALED = CHUNK + TAG


def blob_key(secret: bytes, nonce: bytes, sha256_hex: str) -> bytes:
    """The key of one download: from the FileManager secret, the URL's nonce and the blob."""
    return derive_key(secret, nonce, b"troop blob v1 " + sha256_hex.encode())


def _nonce(index: int, last: bool) -> bytes:
    return struct.pack(">QI", index, 1 if last else 0)


class StreamSealer:
    def __init__(self, key: bytes) -> None:
        self._cipher = SessionCipher(key)
        self._index = 0

    def seal(self, data: bytes, last: bool) -> bytes:
        if len(data) > CHUNK:
            raise ValueError(f"chunks are at most {CHUNK} bytes")
        ct = self._cipher.seal_with_nonce(_nonce(self._index, last), data, b"")
        self._index += 1
        return _LEN.pack(len(ct)) + ct


class StreamOpener:
    """Feed it what the HTTP body gives; it returns the plaintext that has been verified."""

    def __init__(self, key: bytes) -> None:
        self._cipher = SessionCipher(key)
        self._index = 0
        self._buf = bytearray()
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while len(self._buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buf)
            if size < TAG or size > _MAX_SEALED:
                raise SealError(f"bad chunk length {size}")
            if len(self._buf) < _LEN.size + size:
                break
            if self.done:
                raise SealError("data after the last chunk")
            ct = bytes(self._buf[_LEN.size : _LEN.size + size])
            del self._buf[: _LEN.size + size]
            try:
                out += self._cipher.open(_nonce(self._index, False), ct, b"")
            except SealError:
                out += self._cipher.open(_nonce(self._index, True), ct, b"")
                self.done = True
            self._index += 1
        return bytes(out)

    def finish(self) -> None:
        """Raise SealError unless the stream ended exactly after its last chunk."""
        if not self.done or self._buf:
            raise SealError("the stream was cut short")


def seal_all(key: bytes, data: bytes) -> bytes:
    """The whole stream for `data` at once (for tests and small blobs)."""
    sealer = StreamSealer(key)
    parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    return b"".join(sealer.seal(p, i == len(parts) - 1) for i, p in enumerate(parts))
