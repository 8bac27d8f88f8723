"""Scale-out: several Generals sharing one PostgreSQL store and one NATS bus.

A General is in cluster mode when its `bus` setting is a nats:// URL. Then:

- Identity. Each process start picks a General id (`gid`, 8 hex digits) and registers in the
  store's `generals` table, refreshing `seen_at` every `BEAT` seconds. A General not seen for
  `DEAD_AFTER` seconds is dead (a clean stop marks itself dead at once). The RSA key pair that
  scouts pin is shared: the first General stores its own key (DATA_DIR/general.key) in the
  store and every other General uses the stored one. The session key B is NOT shared: each
  General keeps its own, new on every start; it only ever derives keys for its own connections,
  so sharing it would buy nothing and put it in every database backup.
- Bus sealing. Every bus message is sealed with AES-256-GCM under a cluster key kept in the
  store (made by the first General), with the subject as associated data and a timestamp
  checked for freshness: reaching NATS is not enough to send a task to a scout.
- Presence. Each General tells the others which scouts connect to and leave it
  (`troop.c.presence`, numbered per General; a gap or a bus reconnect asks the sender for a
  snapshot on `troop.g.<gid>.presence`). A dead General's scouts are dropped from presence.
- Jobs. The General that takes the API call owns the job (`jobs.owner`). Tasks for scouts on
  another General go there as one request per General (`troop.g.<gid>.tasks`); acks, output,
  results and disconnects come back to the owner in batches (`troop.g.<owner>.events`). When
  the owner cannot be reached, a result is written to the store directly: nothing is lost.
- Death of an owner. Every General looks for running jobs whose owner is dead and claims
  them (an atomic UPDATE: one winner); the new owner finishes them at their deadline,
  reading what other Generals stored meanwhile.
- A scout's Hello lists the tasks it still holds (running, or with a result not yet sent):
  a job whose scout comes back without its task marks that host `lost` at once.
- Reads. Any General answers for any job: from memory if it owns it, else from the store
  (waits and event streams poll the store; live output lines stream from the owner).
- Keys, rotation, plugin index: a change on one General is broadcast (`troop.c.keys`,
  `troop.c.rotate`, `troop.c.plugins`) and every General reloads from the store; after a
  bus outage each General reloads everything it caches.
- NATS outage: every General keeps serving its own scouts; a task for a scout on another
  General fails at once with a clear error; everything resumes when NATS is back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from troop.bus import Bus, BusError, BusNoResponders, BusTimeout, BusUnavailable
from troop.general import cluster_wire as wire
from troop.general.hub import ScoutHub
from troop.general.jobs import JobManager
from troop.general.keys import KeyRegistry
from troop.general.presence import Presence
from troop.protocol import messages
from troop.store import GeneralRow, Store

log = logging.getLogger("troop.general.cluster")

BEAT = 2.0  # seconds between a General's beats in the store
DEAD_AFTER = 10.0  # a General not seen for this long is dead: its scouts and jobs are taken over
FORGET_AFTER = timedelta(days=1)  # registrations of dead Generals are kept this long (GET /api/v1/generals)
REQUEST_TIMEOUT = 3.0
CHUNK = 250  # tasks per bus request: keeps a message of big tasks under NATS' 1 MiB
MAX_REMOTE_TASKS = 200_000  # tasks handed to our scouts for other Generals, remembered for routing


def new_gid() -> str:
    return secrets.token_hex(4)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Cluster:
    """One General's part in a cluster: implements the hub's TaskEvents (routing what scouts
    say to the job's owner) and the JobManager's Remote (reaching scouts of other Generals)."""

    def __init__(self, store: Store, bus: Bus, hub: ScoutHub, keys: KeyRegistry, jobs: JobManager, gid: str) -> None:
        self.store, self.bus, self.hub, self.keys, self.jobs = store, bus, hub, keys, jobs
        self.gid = gid
        self.presence = Presence(gid)
        self.live: set[str] = {gid}
        self.row = GeneralRow(id=gid, hostname=socket.gethostname())
        self.on_plugins: Callable[[], Awaitable[None]] | None = None
        self.on_tokens: Callable[[], None] | None = None
        self._remote_tasks: OrderedDict[str, tuple[str, str]] = OrderedDict()  # task -> (owner, host)
        self._host_tasks: dict[str, set[str]] = {}
        self._outbox: dict[str, wire.EventBatch] = {}
        self._flush_scheduled = False
        self._presence_scheduled = False
        self._steady_since: float | None = None  # beats in the store have succeeded since then
        self._mismatch: set[str] = set()  # peers whose scout count disagreed with presence at the last beat
        self._background: set[asyncio.Future[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        # Hooked in at once: a scout connecting before start() is still announced (a later
        # snapshot carries it if the bus was not up yet).
        hub.events = self
        hub.presence_changed = self._local_presence
        jobs.remote = self
        keys.on_change = lambda names: self.broadcast(wire.KEYS, wire.KeyChange(names))

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        own = {
            "tasks": self._on_tasks,
            "cancel": self._on_cancel,
            "events": self._on_events,
            "presence": self._on_snapshot_request,
        }
        for what, handler in own.items():
            await self.bus.subscribe(wire.to_general(self.gid, what), handler)
        await self.bus.subscribe(wire.PRESENCE, self._on_presence)
        await self.bus.subscribe(wire.KEYS, self._on_keys)
        await self.bus.subscribe(wire.ROTATE, self._on_rotate)
        await self.bus.subscribe(wire.PLUGINS, self._on_plugins)
        await self.bus.subscribe(wire.TOKENS, self._on_tokens)
        self.bus.on_state(self._bus_state)
        await self.bus.start()
        await self._beat()
        self._loop_task = asyncio.create_task(self._beat_loop())
        self._spawn(self._resync())

    async def announce(self, api: str, scouts: str) -> None:
        """Record the addresses this General serves on (shown by GET /api/v1/generals)."""
        self.row.api, self.row.scouts = api, scouts
        await self.store.general_beat(self.row)

    def detach(self) -> None:
        """Stopping: scouts about to be cut off keep their tasks, and our jobs go to an adopter
        as they are; they must not be marked lost here on the way out."""
        self.hub.events = None

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        # Tell the others at once that we are gone: they adopt our running jobs now, not in DEAD_AFTER.
        self.row.seen_at = datetime(1970, 1, 1, tzinfo=UTC)
        try:
            await self.store.general_beat(self.row)
        except Exception as exc:
            log.warning("could not mark this General stopped in the store: %s", exc)
        await self.bus.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def broadcast(self, subject: str, msg: Any) -> None:
        self._spawn(self._publish(subject, wire.encode(msg)))

    async def _publish(self, subject: str, data: bytes) -> None:
        try:
            await self.bus.publish(subject, data)
        except BusError as exc:
            log.warning("could not tell the other Generals", extra={"fields": {"subject": subject, "why": str(exc)}})

    # ------------------------------------------------------------ liveness and adoption
    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(BEAT)
            try:
                await self._beat()
            except Exception as exc:
                self._steady_since = None
                log.warning("cluster beat failed: %s", exc)

    async def _beat(self) -> None:
        now = utcnow()
        self.row.seen_at, self.row.online = now, len(self.hub.online)
        await self.store.general_beat(self.row)
        if self._steady_since is None:
            self._steady_since = time.monotonic()
        rows = await self.store.all_generals()
        live = {r.id for r in rows if (now - r.seen_at).total_seconds() < DEAD_AFTER} | {self.gid}
        for gid in self.live - live:
            log.warning("a General stopped beating: its scouts and jobs move on", extra={"fields": {"general": gid}})
            self.presence.drop(gid)
        for gid in live - self.live:
            self._spawn(self._snapshot_from(gid))
        self.live = live
        self._check_counts([r for r in rows if r.id in live and r.id != self.gid])
        # Only a General whose own beats are steady judges others dead: after a store outage
        # everybody's seen_at is old, and adopting then would steal live Generals' jobs.
        if time.monotonic() - self._steady_since >= DEAD_AFTER:
            await self._adopt_orphans(sorted(live))
            await self.store.forget_generals(now - FORGET_AFTER)

    def _check_counts(self, peers: list[GeneralRow]) -> None:
        """A presence message lost with no later one to show the gap: a peer's own count of its
        scouts (in the store) disagrees with ours for two beats running: ask for a snapshot."""
        ours = self.presence.counts()
        for row in peers:
            if ours.get(row.id, 0) == row.online:
                self._mismatch.discard(row.id)
            elif row.id in self._mismatch:
                self._mismatch.discard(row.id)
                self._spawn(self._snapshot_from(row.id))
            else:
                self._mismatch.add(row.id)

    async def _adopt_orphans(self, live: list[str]) -> None:
        for row in await self.store.orphaned_jobs(live):
            if await self.store.claim_job(row.id, row.owner, self.gid):
                await self.jobs.adopt(row)

    # ------------------------------------------------------------ Remote (for the JobManager)
    def holder(self, host: str) -> str | None:
        return self.presence.holder(host)  # a dead General's entries are dropped at the beat that finds it

    async def send_tasks(self, gid: str, items: list[tuple[str, messages.Task]]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            try:
                data = await self.bus.request(
                    wire.to_general(gid, "tasks"), wire.encode(wire.TaskBatch(self.gid, chunk)), REQUEST_TIMEOUT
                )
                missing = wire.decode(data, wire.TaskReply).missing
                failed.update({h: f"scout no longer connected to General {gid}" for h in missing})
            except (BusError, msgspec.DecodeError) as exc:
                why = _unreachable(gid, exc)
                log.warning("could not hand tasks to another General", extra={"fields": {"general": gid, "why": why}})
                failed.update({host: why for host, _ in chunk})
        return failed

    def cancel(self, host: str, task_id: str) -> None:
        gid = self.holder(host)
        if gid is not None:
            self.broadcast(wire.to_general(gid, "cancel"), wire.CancelBatch([(host, task_id)]))

    async def unknown_result(self, host: str, msg: messages.Result) -> bool:
        """A result for a task this General does not follow: hand it to its job's owner if alive."""
        row = await self.store.job_host_by_task(msg.task_id)
        if row is None or row.hostname != host:
            return False
        owner = await self.store.job_owner(row.job_id)
        if owner is None or owner[1] == "done" or owner[0] == self.gid or owner[0] not in self.live:
            return False
        return await self._deliver(owner[0], wire.EventBatch(self.gid, results=[(host, msg)]))

    # ------------------------------------------------------------ holder side: tasks from owners
    async def _on_tasks(self, _subject: str, data: bytes) -> bytes:
        batch = wire.decode(data, wire.TaskBatch)
        missing = []
        for host, task in batch.items:
            if self.hub.send(host, task):
                self._remember_task(task.task_id, batch.owner, host)
            else:
                missing.append(host)
        return wire.encode(wire.TaskReply(missing))

    def _remember_task(self, task_id: str, owner: str, host: str) -> None:
        self._remote_tasks[task_id] = (owner, host)
        self._host_tasks.setdefault(host, set()).add(task_id)
        while len(self._remote_tasks) > MAX_REMOTE_TASKS:
            self._forget_task(next(iter(self._remote_tasks)))

    def _forget_task(self, task_id: str) -> tuple[str, str] | None:
        entry = self._remote_tasks.pop(task_id, None)
        if entry is not None:
            tasks = self._host_tasks.get(entry[1])
            if tasks is not None:
                tasks.discard(task_id)
                if not tasks:
                    del self._host_tasks[entry[1]]
        return entry

    async def _on_cancel(self, _subject: str, data: bytes) -> None:
        for host, task_id in wire.decode(data, wire.CancelBatch).items:
            self.hub.send(host, messages.Cancel(task_id=task_id))

    # ------------------------------------------------------------ TaskEvents (from the hub)
    def on_ack(self, hostname: str, task_id: str, state: str) -> None:
        entry = self._remote_tasks.get(task_id)
        if entry is None:
            self.jobs.on_ack(hostname, task_id, state)
        elif entry[1] == hostname:
            self._batch(entry[0]).acks.append((hostname, task_id, state))

    def on_output(self, hostname: str, msg: messages.Output) -> None:
        entry = self._remote_tasks.get(msg.task_id)
        if entry is None:
            self.jobs.on_output(hostname, msg)
        elif entry[1] == hostname:
            self._batch(entry[0]).outputs.append((hostname, msg))

    def on_result(self, hostname: str, msg: messages.Result) -> None:
        entry = self._remote_tasks.get(msg.task_id)
        if entry is None or entry[1] != hostname:
            self.jobs.on_result(hostname, msg)
            return
        self._forget_task(msg.task_id)
        self._batch(entry[0]).results.append((hostname, msg))

    def on_disconnect(self, hostname: str) -> None:
        self.jobs.on_disconnect(hostname)
        for task_id in list(self._host_tasks.get(hostname, ())):
            entry = self._forget_task(task_id)
            if entry is not None:
                self._batch(entry[0]).gone.append((hostname, task_id))

    def on_holding(self, hostname: str, holding: list[str]) -> None:
        self.jobs.on_holding(hostname, holding)

    def _batch(self, owner: str) -> wire.EventBatch:
        batch = self._outbox.get(owner)
        if batch is None:
            batch = self._outbox[owner] = wire.EventBatch(self.gid)
        if not self._flush_scheduled:
            # Everything scouts say within one turn of the event loop goes out as one message.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        return batch

    def _flush_outbox(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for owner, batch in outbox.items():
            self._spawn(self._send_events(owner, batch))

    async def _send_events(self, owner: str, batch: wire.EventBatch) -> None:
        if await self._deliver(owner, batch):
            return
        # The owner is gone or out of reach: results must not be: its adopter or the store takes them.
        for host, result in batch.results:
            self.jobs.on_result(host, result)

    async def _deliver(self, owner: str, batch: wire.EventBatch) -> bool:
        try:
            await self.bus.request(wire.to_general(owner, "events"), wire.encode(batch), REQUEST_TIMEOUT)
        except BusError as exc:
            log.warning("could not reach a job's owner", extra={"fields": {"general": owner, "why": str(exc)}})
            return False
        return True

    # ------------------------------------------------------------ owner side: events from holders
    async def _on_events(self, _subject: str, data: bytes) -> bytes:
        batch = wire.decode(data, wire.EventBatch)
        for host, task_id, state in batch.acks:
            self.jobs.on_ack(host, task_id, state)
        for host, output in batch.outputs:
            self.jobs.on_output(host, output)
        for host, result in batch.results:
            self.jobs.on_result(host, result)
        for host, task_id in batch.gone:
            self.jobs.on_task_gone(host, task_id)
        return b"ok"

    # ------------------------------------------------------------ presence
    def _local_presence(self, host: str, online: bool, holding: list[str]) -> None:
        self.presence.local_change(host, online, holding)
        if not self._presence_scheduled:
            self._presence_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_presence)

    def _flush_presence(self) -> None:
        self._presence_scheduled = False
        msg = self.presence.take_delta()
        if msg is not None:
            self._spawn(self._publish(wire.PRESENCE, wire.encode(msg)))

    async def _on_presence(self, _subject: str, data: bytes) -> None:
        msg = wire.decode(data, wire.Presence)
        if not self.presence.apply(msg, self.jobs.on_holding):
            await self._snapshot_from(msg.gid)

    async def _on_snapshot_request(self, _subject: str, _data: bytes) -> bytes:
        return wire.encode(self.presence.snapshot(list(self.hub.online)))

    async def _snapshot_from(self, gid: str) -> None:
        if gid == self.gid:
            return
        try:
            data = await self.bus.request(wire.to_general(gid, "presence"), b"", REQUEST_TIMEOUT)
        except BusError as exc:
            log.info("no presence snapshot", extra={"fields": {"general": gid, "why": str(exc)}})
            return
        self.presence.apply(wire.decode(data, wire.Presence), self.jobs.on_holding)

    # ------------------------------------------------------------ keys, rotation, plugins
    async def _on_keys(self, _subject: str, data: bytes) -> None:
        await self.keys.reload(wire.decode(data, wire.KeyChange).hosts)

    def rotate(self, why: str) -> int:
        """Rotate here and on every other General (each has its own session key)."""
        key_id = self.hub.rotate(why)
        self.broadcast(wire.ROTATE, wire.Rotate(f"{why} (via General {self.gid})"))
        return key_id

    async def _on_rotate(self, _subject: str, data: bytes) -> None:
        self.hub.rotate(wire.decode(data, wire.Rotate).why)

    def plugins_pulled(self) -> None:
        self.broadcast(wire.PLUGINS, wire.Empty())

    async def _on_plugins(self, _subject: str, _data: bytes) -> None:
        if self.on_plugins is not None:
            await self.on_plugins()

    def tokens_revoked(self) -> None:
        self.broadcast(wire.TOKENS, wire.Empty())

    async def _on_tokens(self, _subject: str, _data: bytes) -> None:
        if self.on_tokens is not None:
            self.on_tokens()

    # ------------------------------------------------------------ after a bus outage
    def _bus_state(self, state: str) -> None:
        log.warning("the bus between Generals is %s", state)
        if state == "reconnected":
            self._spawn(self._resync())

    async def _resync(self) -> None:
        """Messages sent while we were cut off are gone: reread what they would have told us."""
        try:
            await self.keys.reload()
            if self.on_plugins is not None:
                await self.on_plugins()
        except Exception as exc:
            log.warning("could not reload keys and plugins after a bus outage: %s", exc)
        for gid in sorted(self.live - {self.gid}):
            await self._snapshot_from(gid)


def _unreachable(gid: str, exc: Exception) -> str:
    if isinstance(exc, BusUnavailable):
        return f"the bus between Generals (NATS) is down: cannot reach General {gid}, which holds this scout"
    if isinstance(exc, BusNoResponders):
        return f"General {gid}, which holds this scout, does not answer (it stopped or died)"
    if isinstance(exc, BusTimeout):
        return f"General {gid}, which holds this scout, did not answer within {REQUEST_TIMEOUT:g}s"
    return f"cannot hand the task to General {gid}: {exc}"
