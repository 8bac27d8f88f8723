"""A Bus whose every message is sealed with AES-256-GCM under a key the Generals share.

NATS credentials keep strangers off the bus; this keeps them from doing harm if they get
on it anyway: a message that was not sealed with the cluster key, was sealed for another
subject, or is older than `window` seconds is dropped (one log line) before any handler
sees it. The key lives in the store, which every General of a cluster already trusts.

Wire form: 12-byte nonce || AES-GCM(8-byte big-endian ms timestamp || payload), with the
subject as associated data. A reply's associated data is "<", the request's subject and the
request's nonce: a reply answers that one request and no other.
"""

from __future__ import annotations

import logging
import os
import struct
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from troop.bus.base import Bus, BusError, Handler, Subscription

log = logging.getLogger("troop.bus.sealed")

OVERHEAD = 12 + 8 + 16  # nonce, timestamp, tag
_TS = struct.Struct(">Q")


class BusSealError(BusError):
    """A bus message failed authentication or freshness."""


class SealedBus(Bus):
    def __init__(self, inner: Bus, key: bytes, window: float = 60.0) -> None:
        super().__init__()
        self.inner = inner
        self._aead = AESGCM(key)  # 32-byte key: AES-256
        self._window_ms = int(window * 1000)
        inner.on_state(self._emit)

    def seal(self, subject: str, data: bytes, bound: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, _TS.pack(int(time.time() * 1000)) + data, subject.encode() + bound)

    def open(self, subject: str, data: bytes, bound: bytes = b"") -> bytes:
        if len(data) < OVERHEAD:
            raise BusSealError(f"bus message on {subject} too short to be sealed")
        try:
            plain = self._aead.decrypt(data[:12], data[12:], subject.encode() + bound)
        except InvalidTag as exc:  # wrong key, subject or bytes
            raise BusSealError(f"bus message on {subject} failed authentication") from exc
        (ts,) = _TS.unpack_from(plain)
        if abs(int(time.time() * 1000) - ts) > self._window_ms:
            raise BusSealError(f"bus message on {subject} is stale or from the future")
        return plain[_TS.size :]

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, subject: str, data: bytes) -> None:
        await self.inner.publish(subject, self.seal(subject, data))

    async def subscribe(self, subject: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        async def opened(actual: str, data: bytes) -> bytes | None:
            try:
                plain = self.open(actual, data)
            except BusSealError as exc:
                log.warning("dropped a bus message: %s", exc)
                return None
            answer = await handler(actual, plain)
            return None if answer is None else self.seal("<" + actual, answer, bound=data[:12])

        return await self.inner.subscribe(subject, opened, queue=queue)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        sealed = self.seal(subject, data)
        answer = await self.inner.request(subject, sealed, timeout)
        return self.open("<" + subject, answer, bound=sealed[:12])

    @property
    def connected(self) -> bool:
        return self.inner.connected

    @property
    def max_payload(self) -> int:
        return self.inner.max_payload - OVERHEAD
