"""The sealed channel: turns typed messages into sealed frame bodies and back.

Sealed body: type (u8) | key id (u32) | sequence (u64) | timestamp ms (u64) | nonce (12) | ciphertext.
The associated data is that prefix, the direction and the scout's hostname, so a frame cannot
be moved to another scout, turned around, retyped or reordered without failing to open.
Sequence numbers only go up; timestamps must fall inside the freshness window.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import msgspec

from troop.protocol import messages
from troop.protocol.crypto import NONCE_SIZE, SessionCipher
from troop.protocol.errors import DecodeError, ReplayError, SealError, StaleError

PREFIX = struct.Struct(">BIQQ")
SCOUT_TO_GENERAL = b"S"
GENERAL_TO_SCOUT = b"G"
DEFAULT_WINDOW = 120.0  # seconds of clock skew and delay tolerated


def now_ms() -> int:
    return int(time.time() * 1000)


class SealedChannel:
    """One direction pair of one connection. Pure: no sockets, no clock unless handed one."""

    def __init__(
        self,
        hostname: str,
        side: bytes,
        send_key: bytes,
        recv_key: bytes,
        *,
        send_key_id: int = 0,
        recv_key_id: int = 0,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._host = hostname.encode()
        self._side = side
        self._peer = GENERAL_TO_SCOUT if side == SCOUT_TO_GENERAL else SCOUT_TO_GENERAL
        self._send: tuple[int, SessionCipher] = (send_key_id, SessionCipher(send_key))
        # Two receive keys during a rotation: frames sealed before the peer switched still open.
        self._recv: dict[int, SessionCipher] = {recv_key_id: SessionCipher(recv_key)}
        self._send_seq = 0
        self._recv_seq = 0
        self._window_ms = int(window * 1000)
        self._clock = clock
        self._allowed = messages.SCOUT_TO_GENERAL if self._peer == SCOUT_TO_GENERAL else messages.GENERAL_TO_SCOUT

    # -- keys
    def set_send_key(self, key_id: int, key: bytes) -> None:
        self._send = (key_id, SessionCipher(key))

    def add_recv_key(self, key_id: int, key: bytes) -> None:
        self._recv[key_id] = SessionCipher(key)
        while len(self._recv) > 2:  # drop the oldest added (dicts keep insertion order)
            del self._recv[next(iter(self._recv))]

    @property
    def send_key_id(self) -> int:
        return self._send[0]

    # -- messages
    def seal(self, msg: msgspec.Struct) -> bytes:
        self._send_seq += 1
        key_id, cipher = self._send
        prefix = PREFIX.pack(messages.tag_of(msg), key_id, self._send_seq, self._clock())
        nonce, ct = cipher.seal(messages.encode(msg), prefix + self._side + self._host)
        return prefix + nonce + ct

    def open(self, body: bytes) -> messages.SealedMessage:
        head = PREFIX.size + NONCE_SIZE
        if len(body) < head + 16:
            raise SealError("sealed frame too short")
        msg_type, key_id, seq, ts = PREFIX.unpack_from(body)
        cipher = self._recv.get(key_id)
        if cipher is None:
            raise SealError(f"unknown key id {key_id}")
        prefix = body[: PREFIX.size]
        plain = cipher.open(body[PREFIX.size : head], body[head:], prefix + self._peer + self._host)
        # Authenticated from here on: a failure below is the peer's bug or a replay.
        if seq <= self._recv_seq:
            raise ReplayError(f"sequence {seq} after {self._recv_seq}")
        if abs(self._clock() - ts) > self._window_ms:
            raise StaleError(f"timestamp {ts} outside the {self._window_ms} ms window")
        msg = messages.decode_sealed(plain)
        if messages.tag_of(msg) != msg_type:
            raise DecodeError("message type does not match its frame")
        if type(msg) not in self._allowed:
            raise DecodeError(f"{type(msg).__name__} is not allowed in this direction")
        self._recv_seq = seq
        return msg
