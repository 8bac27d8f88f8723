"""Length-prefixed frames: an 8-byte header, then the body.

Header: magic b"TP", protocol version (u8), frame kind (u8), body length (u32, big endian).
The length is checked against the cap as soon as the header is complete, before any of
the body is buffered, so a huge length prefix costs nothing but a closed connection.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from troop.protocol.errors import BadMagic, BadVersion, FrameError, FrameTooLarge

MAGIC = b"TP"
VERSION = 1
HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = HEADER.size

KIND_CLEAR = 0  # handshake messages: plain msgpack, signed where it matters
KIND_SEALED = 1  # everything after the handshake: AES-256-GCM

# Two capped output streams of 1 MiB each plus framing fit well under this.
DEFAULT_MAX_BODY = 8 * 1024 * 1024


class Frame(NamedTuple):
    kind: int
    body: bytes


def encode_frame(kind: int, body: bytes, max_body: int = DEFAULT_MAX_BODY) -> bytes:
    if len(body) > max_body:
        raise FrameTooLarge(len(body), max_body)
    return HEADER.pack(MAGIC, VERSION, kind, len(body)) + body


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole frames back."""

    def __init__(self, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.max_body = max_body
        self._buf = bytearray()
        self._need: int | None = None  # body length of the frame in progress
        self._kind = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            if self._need is None:
                if len(self._buf) < HEADER_SIZE:
                    return frames
                self._kind, self._need = parse_header(bytes(self._buf[:HEADER_SIZE]), self.max_body)
                del self._buf[:HEADER_SIZE]
            if len(self._buf) < self._need:
                return frames
            body = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            frames.append(Frame(self._kind, body))
            self._need = None

    @property
    def buffered(self) -> int:
        return len(self._buf)


def parse_header(header: bytes, max_body: int = DEFAULT_MAX_BODY) -> tuple[int, int]:
    """Return (kind, body length) or raise the FrameError that says what is wrong."""
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise BadMagic(f"bad magic {magic!r}")
    if version != VERSION:
        raise BadVersion(version)
    if kind not in (KIND_CLEAR, KIND_SEALED):
        raise FrameError(f"unknown frame kind {kind}")
    if length > max_body:
        raise FrameTooLarge(length, max_body)
    return kind, length
