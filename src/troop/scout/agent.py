"""The scout's connection loop: dial a General, handshake, serve sealed frames, reconnect.

Every connection is dialled by the scout; it opens no port. On failure it waits an
exponential delay with full jitter and tries the next General in its list.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import msgspec

from troop import __version__
from troop.backoff import Backoff
from troop.protocol import handshake, messages
from troop.protocol.channel import SCOUT_TO_GENERAL, SealedChannel, now_ms
from troop.protocol.crypto import KeyPair, PublicKey, new_session_key
from troop.protocol.errors import HandshakeError, ProtocolError
from troop.protocol.frames import KIND_CLEAR, KIND_SEALED, FrameDecoder, encode_frame
from troop.scout.facts import gather_facts
from troop.scout.identity import GeneralPin, PinError
from troop.scout.plugins import PluginStore
from troop.scout.settings import ScoutSettings
from troop.scout.tasks import TaskRunner
from troop.settings import parse_hostport

log = logging.getLogger("troop.scout")


class Refused(Exception):
    """The General said rejected or denied; retrying soon would not help."""


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(max_frame)
        self.max_frame = max_frame
        self.frames: list[tuple[int, bytes]] = []
        self.channel: SealedChannel | None = None
        self.last_recv = time.monotonic()

    async def read(self) -> tuple[int, bytes]:
        while not self.frames:
            data = await self.reader.read(256 * 1024)
            if not data:
                raise ConnectionError("the General closed the connection")
            self.frames.extend(self.decoder.feed(data))
        self.last_recv = time.monotonic()
        return self.frames.pop(0)

    def send_clear(self, msg: msgspec.Struct) -> None:
        self.writer.write(encode_frame(KIND_CLEAR, messages.encode(msg), self.max_frame))

    def send(self, msg: msgspec.Struct) -> bool:
        if self.channel is None or self.writer.is_closing():
            return False
        self.writer.write(encode_frame(KIND_SEALED, self.channel.seal(msg), self.max_frame))
        return True


class Agent:
    def __init__(self, settings: ScoutSettings, keypair: KeyPair, local_blacklist: list[str]) -> None:
        self.settings = settings
        self.keypair = keypair
        self.hostname = settings.hostname
        self.pin = GeneralPin(settings.data_dir, settings.general_fingerprint)
        protected = [] if settings.allow_data_dir else [str(settings.data_dir.resolve())]
        self.plugins = PluginStore(settings.data_dir / "plugins", settings.plugins)
        self.runner = TaskRunner(
            settings.max_concurrency, local_blacklist, protected=protected, plugins=self.plugins, settings=settings
        )
        self.runner.facts_changed = self._send_facts
        self.backoff = Backoff(settings.reconnect_min, settings.reconnect_max)
        self.addresses = [parse_hostport(a, 6954) for a in settings.general]
        self.state = "starting"

    async def run(self) -> None:
        index = random.randrange(len(self.addresses))  # noqa: S311 - spreading load, not a secret
        while True:
            host, port = self.addresses[index % len(self.addresses)]
            try:
                await self._connect_once(host, port)
            except Refused as exc:
                log.warning("the General refused this scout: %s", exc)
                await asyncio.sleep(self.settings.reconnect_max * random.uniform(0.5, 1.0))  # noqa: S311
                continue
            except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
                log.info("connection to %s:%d ended: %s", host, port, exc or type(exc).__name__)
            except (ProtocolError, PinError) as exc:
                log.warning("closed connection to %s:%d: %s: %s", host, port, type(exc).__name__, exc)
            self.state = "disconnected"
            # Another General, at random: the scouts of a General that died spread over the survivors.
            index += random.randrange(1, max(len(self.addresses), 2))  # noqa: S311
            await asyncio.sleep(self.backoff.next_delay())

    async def _connect_once(self, host: str, port: int) -> None:
        timeout = self.settings.connect_timeout
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=2**20), timeout)
        conn = Connection(reader, writer, self.settings.max_frame)
        try:
            heartbeat = await self._handshake(conn, timeout)
            self.backoff.reset()
            self.state = "connected"
            log.info("connected to the General at %s:%d", host, port)
            self.runner.send = conn.send
            self._queue_lifecycle_results()
            self.runner.flush_outbox()
            beat = asyncio.create_task(self._heartbeat(conn, heartbeat))
            try:
                await self._serve(conn)
            finally:
                beat.cancel()
                self.runner.send = lambda msg: False
        finally:
            writer.close()

    async def _handshake(self, conn: Connection, timeout: float) -> float:
        kind, body = await asyncio.wait_for(conn.read(), timeout)
        server_hello = messages.decode_clear(body) if kind == KIND_CLEAR else None
        if isinstance(server_hello, messages.Refused):
            raise HandshakeError(f"the General refused: {server_hello.reason}")
        if not isinstance(server_hello, messages.ServerHello):
            raise HandshakeError("expected the General's hello")
        general_key = PublicKey.from_der(server_hello.general_key)
        self.pin.check(general_key.fingerprint)
        session_key = new_session_key()  # C: new for every connection
        facts = self._facts()
        signed, nonce = handshake.build_hello(
            self.keypair, self.hostname, facts, server_hello, session_key, now_ms(), self.runner.holding()
        )
        conn.send_clear(signed)
        while True:  # a pending scout waits here for a second Welcome
            kind, body = await conn.read()
            msg = messages.decode_clear(body) if kind == KIND_CLEAR else None
            if isinstance(msg, messages.Refused):
                raise HandshakeError(f"the General refused: {msg.reason}")
            if not isinstance(msg, messages.Signed):
                raise HandshakeError("expected the General's welcome")
            welcome, g2s = handshake.open_welcome(msg, general_key, nonce, self.keypair, self.hostname)
            if welcome.status == "accepted":
                break
            if welcome.status == "pending":
                self.state = "pending"
                log.info("this scout's key is pending; waiting for `troop key accept %s`", self.hostname)
                continue
            self.state = welcome.status
            raise Refused(f"key {welcome.status} for {self.hostname}")
        conn.channel = SealedChannel(self.hostname, SCOUT_TO_GENERAL, session_key, g2s, recv_key_id=welcome.key_id)
        self.runner.general_blacklist = list(welcome.blacklist)
        return welcome.heartbeat

    def _facts(self) -> messages.Facts:
        installed, wants = self.plugins.facts()
        facts = gather_facts(self.settings.tags, __version__, installed)
        facts.wants = wants
        return facts

    def _send_facts(self) -> None:
        self.runner.send(messages.FactsUpdate(facts=self._facts()))

    def _queue_lifecycle_results(self) -> None:
        """Results of restarts and upgrades that this process is the outcome of."""
        data_dir = self.settings.data_dir.resolve()
        if not (data_dir / "lifecycle").is_dir():
            return
        from troop.scout import lifecycle

        for result in lifecycle.pending_results(data_dir, __version__):
            self.runner.outbox[result.task_id] = result
            self.runner.mark_seen(result.task_id)
            lifecycle.clear_marker(data_dir, result.task_id)  # for an upgrade: tells scout_manager "good"

    async def _serve(self, conn: Connection) -> None:
        assert conn.channel is not None
        while True:
            kind, body = await conn.read()
            if kind != KIND_SEALED:
                raise HandshakeError("clear frame after the handshake")
            msg = conn.channel.open(body)
            if isinstance(msg, messages.Task):
                self.runner.accept(msg)
            elif isinstance(msg, messages.Rekey):
                new_key = handshake.open_rekey(msg, self.keypair)
                conn.channel.add_recv_key(msg.key_id, new_key)
                conn.send(messages.RekeyAck(key_id=msg.key_id))
            elif isinstance(msg, messages.Cancel):
                self.runner.cancel(msg.task_id)
            elif isinstance(msg, messages.ConfigUpdate):
                self.runner.general_blacklist = list(msg.blacklist)
            # No await between buffered frames: a Task and the Cancel right behind it (a scout
            # that was frozen past the deadline) are handled before the task can start.

    async def _heartbeat(self, conn: Connection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - conn.last_recv > 3 * interval:
                log.warning("no word from the General for %.0fs; reconnecting", 3 * interval)
                conn.writer.close()
                return
            conn.send(messages.Heartbeat(ts=now_ms()))
