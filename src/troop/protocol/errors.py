"""Errors of the wire protocol. Each names one reason a peer's bytes were refused.

ProtocolError
├── FrameError
│   ├── BadMagic          not a Troop frame
│   ├── BadVersion        a protocol version we do not speak
│   └── FrameTooLarge     length prefix over the cap (checked before buffering)
├── DecodeError           bytes that are not a valid message
├── SealError             AES-GCM open failed: tampered, wrong or stale key
├── ReplayError           a sequence number that did not go up
├── StaleError            a timestamp outside the freshness window
└── HandshakeError        a bad signature, challenge, key or status
"""

from troop.errors import TroopError


class ProtocolError(TroopError):
    """The peer sent something we refuse; the connection should be closed."""


class FrameError(ProtocolError):
    pass


class BadMagic(FrameError):
    pass


class BadVersion(FrameError):
    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported protocol version {version}")
        self.version = version


class FrameTooLarge(FrameError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class DecodeError(ProtocolError):
    pass


class SealError(ProtocolError):
    pass


class ReplayError(ProtocolError):
    pass


class StaleError(ProtocolError):
    pass


class HandshakeError(ProtocolError):
    pass
