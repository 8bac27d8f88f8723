"""The scout port: accepts connections, tracks who is online, fans tasks out, rotates keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from troop.general.identity import SessionKeys
from troop.general.keys import KeyRegistry
from troop.general.session import ScoutSession
from troop.general.settings import GeneralSettings
from troop.protocol import messages
from troop.protocol.channel import now_ms
from troop.protocol.crypto import KeyPair
from troop.store import StoreUnavailable

log = logging.getLogger("troop.general.hub")
MAX_CONCURRENT_HANDSHAKES = 64


class TaskEvents(Protocol):
    """What the hub tells the job manager."""

    def on_ack(self, hostname: str, task_id: str, state: str) -> None: ...
    def on_output(self, hostname: str, msg: messages.Output) -> None: ...
    def on_result(self, hostname: str, msg: messages.Result) -> None: ...
    def on_disconnect(self, hostname: str) -> None: ...
    def on_holding(self, hostname: str, holding: list[str]) -> None: ...


class Pace:
    """At most `rate` admissions a second, evenly spaced: after a General restart the whole fleet
    dials back (with jitter) and each handshake costs RSA work; spacing them keeps the API and
    the scouts already back responsive, and any one-second window holds at most rate + 1."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval


class ScoutHub:
    def __init__(
        self,
        settings: GeneralSettings,
        identity: KeyPair,
        session_keys: SessionKeys,
        keys: KeyRegistry,
        blacklist: list[str],
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.session_keys = session_keys
        self.keys = keys
        self.blacklist = blacklist
        self.online: dict[str, ScoutSession] = {}
        self.pending: dict[str, ScoutSession] = {}
        self.events: TaskEvents | None = None
        self.handshake_slots = asyncio.Semaphore(MAX_CONCURRENT_HANDSHAKES)
        self.handshake_pace = Pace(settings.max_handshake_rate)
        self.drops: Counter[str] = Counter()
        self.on_online: list[Callable[[str], Awaitable[None]]] = []
        # (host, online, tasks it holds): how a cluster learns where each scout is.
        self.presence_changed: Callable[[str, bool, list[str]], None] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        keys.listen(self._key_changed)

    # ------------------------------------------------------------ server
    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port, backlog=4096, limit=2**20)
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        for session in list(self.online.values()) + list(self.pending.values()):
            session.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ScoutSession(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await session.serve()
        except asyncio.CancelledError:
            pass  # the General is stopping; the connection is closed below
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]

    def count_drop(self, reason: str) -> None:
        self.drops[reason] += 1

    # ------------------------------------------------------------ sessions
    def session_started(self, session: ScoutSession) -> None:
        old = self.online.get(session.hostname)
        if old is not None and old is not session:
            # The new connection proved it holds the key; the old one is stale.
            log.info("scout reconnected; closing its previous connection", extra={"fields": {"host": session.hostname}})
            old.close()
        self.online[session.hostname] = session
        log.info("scout online", extra={"fields": {"host": session.hostname, "peer": session.peer}})
        holding = session.hello.holding[:100_000] if session.hello is not None else []
        if self.presence_changed is not None:
            self.presence_changed(session.hostname, True, holding)
        if self.events is not None:
            self.events.on_holding(session.hostname, holding)
        for callback in self.on_online:
            task = asyncio.ensure_future(callback(session.hostname))
            self._tasks.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]

    async def session_ended(self, session: ScoutSession) -> None:
        if self.pending.get(session.hostname) is session:
            del self.pending[session.hostname]
        if self.online.get(session.hostname) is session:
            del self.online[session.hostname]
            log.info("scout offline", extra={"fields": {"host": session.hostname}})
            self._gone(session.hostname)

    async def dispatch(self, session: ScoutSession, msg: msgspec.Struct) -> None:
        events = self.events
        host = session.hostname
        if isinstance(msg, messages.Result):
            if events:
                events.on_result(host, msg)
        elif isinstance(msg, messages.Ack):
            if events:
                events.on_ack(host, msg.task_id, msg.state)
        elif isinstance(msg, messages.Output):
            if events:
                events.on_output(host, msg)
        elif isinstance(msg, messages.FactsUpdate):
            await self.keys.update_facts(host, msg.facts)
        elif isinstance(msg, messages.RekeyAck):
            log.debug("scout took the new key", extra={"fields": {"host": host, "key_id": msg.key_id}})

    def send(self, hostname: str, msg: msgspec.Struct) -> bool:
        session = self.online.get(hostname)
        return session is not None and session.send(msg)

    def local_address(self, hostname: str) -> str:
        """The address of this General that the scout dialled (what it can reach us on)."""
        session = self.online.get(hostname)
        return session.local_ip if session is not None else "127.0.0.1"

    def is_online(self, hostname: str) -> bool:
        return hostname in self.online

    # ------------------------------------------------------------ keys
    async def _key_changed(self, hostname: str, state: str) -> None:
        pending = self.pending.get(hostname)
        if pending is not None and pending.decision is not None and not pending.decision.done():
            pending.decision.set_result(state if state != "deleted" else "rejected")
        if state in ("rejected", "deleted"):
            session = self.online.pop(hostname, None)
            if session is not None:
                session.close()
                self._gone(hostname)
            # Like Salt's rotate_aes_key: a removed host must not keep a valid session key.
            self.rotate("key " + state + " for " + hostname)

    def _gone(self, hostname: str) -> None:
        if self.presence_changed is not None:
            self.presence_changed(hostname, False, [])
        if self.events is not None:
            self.events.on_disconnect(hostname)

    def rotate(self, why: str) -> int:
        """New session key B, handed to every connected scout as a re-key. Returns the key id."""
        key = self.session_keys.rotate()
        sessions = list(self.online.values())
        for session in sessions:
            session.rekey()
        log.info("rotated session key", extra={"fields": {"key_id": key.key_id, "scouts": len(sessions), "why": why}})
        return key.key_id

    def update_blacklist(self, entries: list[str]) -> None:
        self.blacklist = entries
        for session in self.online.values():
            session.send(messages.ConfigUpdate(blacklist=entries))

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            beat = messages.Heartbeat(ts=now_ms())
            for session in list(self.online.values()):
                if now - session.last_recv > 3 * interval:
                    log.warning("scout missed three heartbeats; closing", extra={"fields": {"host": session.hostname}})
                    session.close()
                else:
                    with contextlib.suppress(Exception):
                        session.send(beat)
            try:
                await self.keys.touch(list(self.online))
            except StoreUnavailable as exc:
                log.warning("could not record last_seen", extra={"fields": {"why": str(exc)}})
            except Exception:
                log.exception("could not record last_seen")
