"""One scout connection on the General: handshake, then a sealed reader loop.

Inbound pipeline, in this order, each step with its own drop reason:
frame header (magic, version, size) -> AES-GCM open -> sequence/freshness -> decode ->
direction -> handler. Any refusal closes this connection with one log line; nothing else
is affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from troop.protocol import handshake, messages
from troop.protocol.channel import GENERAL_TO_SCOUT, SealedChannel, now_ms
from troop.protocol.crypto import PublicKey
from troop.protocol.errors import HandshakeError, ProtocolError
from troop.protocol.frames import KIND_CLEAR, KIND_SEALED, FrameDecoder, encode_frame

if TYPE_CHECKING:
    from troop.general.hub import ScoutHub

log = logging.getLogger("troop.general.session")
READ_CHUNK = 256 * 1024


class SessionClosed(Exception):
    pass


class ScoutSession:
    def __init__(self, hub: ScoutHub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hub = hub
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        local = writer.get_extra_info("sockname")
        self.local_ip = str(local[0]) if isinstance(local, tuple) else "127.0.0.1"
        self.hostname = ""
        self.decoder = FrameDecoder(hub.settings.max_frame)
        self.channel: SealedChannel | None = None
        self.scout_key: PublicKey | None = None
        self.session_key = b""  # C: the scout's key for scout->General frames
        self.hello: messages.Hello | None = None
        self.last_recv = time.monotonic()
        self.decision: asyncio.Future[str] | None = None
        self.closed = False
        self._frames: list[tuple[int, bytes]] = []

    # ------------------------------------------------------------ io
    async def read_frame(self) -> tuple[int, bytes]:
        while not self._frames:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise SessionClosed("connection closed by scout")
            self._frames.extend(self.decoder.feed(data))
        self.last_recv = time.monotonic()
        return self._frames.pop(0)

    def send_clear(self, msg: msgspec.Struct) -> None:
        self.writer.write(encode_frame(KIND_CLEAR, messages.encode(msg), self.hub.settings.max_frame))

    def send(self, msg: msgspec.Struct) -> bool:
        """Seal and queue one message; False if the connection is gone."""
        if self.closed or self.channel is None:
            return False
        try:
            self.writer.write(encode_frame(KIND_SEALED, self.channel.seal(msg), self.hub.settings.max_frame))
        except (ConnectionError, RuntimeError):
            self.close()
            return False
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    # ------------------------------------------------------------ lifecycle
    async def serve(self) -> None:
        try:
            status = await self._handshake()
            if status == "pending":
                status = await self._wait_decision()
            if status != "accepted":
                self._welcome(status)
                await self.writer.drain()
                return
            self._establish()
            await self._sealed_loop()
        except (TimeoutError, SessionClosed, ConnectionError, asyncio.IncompleteReadError) as exc:
            if self.hostname and not self.closed:
                log.info(
                    "scout connection ended",
                    extra={"fields": {"host": self.hostname, "peer": self.peer, "why": str(exc) or type(exc).__name__}},
                )
        except ProtocolError as exc:
            self.hub.count_drop(type(exc).__name__)
            log.warning(
                "closed scout connection on bad input",
                extra={
                    "fields": {"host": self.hostname or "?", "peer": self.peer, "why": f"{type(exc).__name__}: {exc}"}
                },
            )
            self._refuse(str(exc))
        finally:
            self.close()
            await self.hub.session_ended(self)

    async def _handshake(self) -> str:
        hello_msg = handshake.server_hello(self.hub.identity, now_ms())
        self.send_clear(hello_msg)
        signed = await asyncio.wait_for(self._read_hello(), self.hub.settings.handshake_timeout)
        # Past the timeout on purpose: waiting in line here is the pace, not a slow scout.
        await self.hub.handshake_pace.wait()
        async with self.hub.handshake_slots:
            hello, scout_key, session_key = handshake.open_hello(
                signed, hello_msg.challenge, self.hub.identity, now_ms()
            )
        self.hostname, self.hello, self.scout_key, self.session_key = hello.hostname, hello, scout_key, session_key
        return await self.hub.keys.decide(hello, scout_key)

    async def _read_hello(self) -> messages.Signed:
        kind, body = await self.read_frame()
        if kind != KIND_CLEAR:
            raise HandshakeError("expected a clear hello")
        signed = messages.decode_clear(body)
        if not isinstance(signed, messages.Signed):
            raise HandshakeError(f"expected a signed hello, got {type(signed).__name__}")
        return signed

    async def _wait_decision(self) -> str:
        """A pending scout keeps its connection and learns of the decision on it."""
        self._welcome("pending")
        self.decision = asyncio.get_running_loop().create_future()
        self.hub.pending[self.hostname] = self
        reader: asyncio.Future[Any] = asyncio.ensure_future(self.read_frame())
        waiting: set[asyncio.Future[Any]] = {self.decision, reader}
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not reader.done():
                reader.cancel()
            # Let the read unwind (and its outcome be taken) before anyone reads this connection again.
            with contextlib.suppress(asyncio.CancelledError, SessionClosed, ConnectionError, ProtocolError):
                await reader
        if self.decision in done:
            return self.decision.result()
        reader.result()  # raises SessionClosed when the scout hung up
        raise HandshakeError("a pending scout may not send anything")

    def _welcome(self, status: str, message: str = "") -> None:
        assert self.hello is not None and self.scout_key is not None
        key = self.hub.session_keys.current
        g2s = key.for_scout(self.session_key, self.hostname) if status == "accepted" else b""
        self.send_clear(
            handshake.build_welcome(
                self.hub.identity,
                self.hello,
                self.scout_key,
                status,
                now_ms(),
                key_id=key.key_id,
                g2s_key=g2s,
                blacklist=self.hub.blacklist,
                heartbeat=self.hub.settings.heartbeat,
                message=message,
            )
        )
        if status == "accepted":
            self.channel = SealedChannel(self.hostname, GENERAL_TO_SCOUT, g2s, self.session_key, send_key_id=key.key_id)

    def _refuse(self, reason: str) -> None:
        if self.closed:
            return
        try:
            self.send_clear(messages.Refused(reason=reason[:200]))
        except (ConnectionError, RuntimeError):
            pass

    def _establish(self) -> None:
        self._welcome("accepted")
        self.hub.session_started(self)

    async def _sealed_loop(self) -> None:
        while True:
            kind, body = await self.read_frame()
            if kind != KIND_SEALED or self.channel is None:
                raise HandshakeError("clear frame after the handshake")
            msg = self.channel.open(body)
            await self.hub.dispatch(self, msg)

    def rekey(self) -> None:
        """Hand this scout its key under the new B, sealed under the old one; then switch."""
        if self.channel is None or self.scout_key is None:
            return
        key = self.hub.session_keys.current
        g2s = key.for_scout(self.session_key, self.hostname)
        if self.send(messages.Rekey(key_id=key.key_id, wrapped_key=self.scout_key.encrypt(g2s))):
            self.channel.set_send_key(key.key_id, g2s)
