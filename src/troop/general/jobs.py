"""Jobs: create, dispatch to scouts, follow every host to a final state, persist, prune.

Results are applied in memory first (so waiters and streams see them at once) and written
to the store by a write-behind flusher in batches (troop.general.jobwriter); a job is only
reported done after its rows are committed, so nothing a caller has seen can be lost by a
restart. In cluster mode (troop.general.cluster) a job's tasks may go to scouts on other
Generals through `remote`, and jobs whose owner died are adopted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from troop import blacklist as blacklist_mod
from troop.general.files import FileService
from troop.general.hub import ScoutHub
from troop.general.jobdata import jsonable_data
from troop.general.jobmirrors import JobMirrors
from troop.general.jobrequest import JobRequest, Remote, TargetNotAllowed, args_json, job_id, target_json
from troop.general.jobstate import FINAL_STATES, RESULT_STATES, HostState, Job
from troop.general.jobwriter import JobWriter
from troop.general.keys import KeyRegistry
from troop.general.settings import GeneralSettings
from troop.general.targeting import name_matches, resolve
from troop.protocol import messages
from troop.store import AuditRow, JobRow, Store, StoreUnavailable

log = logging.getLogger("troop.general.jobs")
RECENT_JOBS = 256
RECENT_HOSTS = 20_000  # host results of finished jobs kept in memory; older ones are read from the store
RECONNECTING_KINDS = frozenset({"scout.restart", "scout.upgrade"})
PRUNE_EVERY = 3600.0
FINISH_RETRY = 1.0  # seconds between tries to store a finished job while the store is down


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobManager:
    def __init__(self, settings: GeneralSettings, store: Store, hub: ScoutHub, keys: KeyRegistry) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.keys = keys
        self.active: dict[str, Job] = {}
        self.recent: OrderedDict[str, Job] = OrderedDict()
        self.by_task: dict[str, tuple[Job, HostState]] = {}
        self._recent_hosts = 0
        self.writer = JobWriter(store)
        self.mirrors = JobMirrors(store, settings.grace)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        self.files: FileService | None = None
        self.keep_blobs: Callable[[], set[str]] = set  # blobs kept whatever the jobs (the plugin index)
        self.remote: Remote | None = None  # set in cluster mode
        hub.events = self

    @property
    def gid(self) -> str:
        return self.remote.gid if self.remote is not None else ""

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the loop holds tasks weakly, and a collected task never finishes.
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.remote is None:
            await self._recover()  # in a cluster, a survivor adopts them instead (adopt)
        self._tasks = [asyncio.create_task(self.writer.run()), asyncio.create_task(self._pruner())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.mirrors.stop()
        await self.writer.flush()

    async def _recover(self) -> None:
        """Jobs a previous run left open: their unanswered hosts can no longer answer here."""
        for row, hosts in await self.store.unfinished_jobs():
            job = Job.from_rows(row, hosts)
            for host in job.hosts.values():
                if not host.final:
                    host.state, host.final = "lost", True
                    host.error = "the General restarted while the task was out"
                    self._mark(job, host)
            await self._finish(job)
            log.info("closed a job left open by a restart", extra={"fields": {"job": job.id}})

    async def adopt(self, row: JobRow) -> None:
        """Follow a running job whose owner died (we won the claim): its scouts may still answer."""
        found = await self.store.get_job(row.id)
        if found is None or row.id in self.active:
            return
        job = Job.from_rows(*found)
        job.owner = self.gid
        self.active[job.id] = job
        for host in job.hosts.values():
            self.by_task[host.task_id] = (job, host)
        left = job.timeout + self.settings.grace - (utcnow() - job.created_at).total_seconds()
        log.info("adopted a job whose General died", extra={"fields": {"job": job.id, "from": row.owner}})
        if job.all_final():
            await self._finish(job)
        else:
            job.timer = asyncio.get_running_loop().call_later(max(left, 0.0), self._deadline, job)

    # ------------------------------------------------------------ submit
    def is_online(self, hostname: str) -> bool:
        """Connected here, or (in a cluster) to another General."""
        if self.hub.is_online(hostname):
            return True
        return self.remote is not None and self.remote.holder(hostname) is not None

    async def submit(self, req: JobRequest) -> Job:
        names = resolve(req.target, self.keys.hosts, self.is_online)
        if req.allowed is not None:
            outside = [n for n in names if not name_matches(n, req.allowed)]
            if outside:
                raise TargetNotAllowed(f"this token may not target {', '.join(outside[:5])}")
        timeout = min(req.timeout or self.settings.default_timeout, self.settings.max_timeout)
        job = Job(
            id=job_id(),
            kind=req.kind,
            target=target_json(req.target),
            args=args_json(req.command, req.args),
            timeout=timeout,
            created_by=req.actor,
            created_at=utcnow(),
            stream=req.stream,
            owner=self.gid,
        )
        refused = self._refused_by_blacklist(req.command, req.argv)
        for name in names:
            host = HostState(hostname=name, task_id=secrets.token_hex(10), state="sent")
            if refused:
                host.state, host.final, host.error = "refused", True, refused
            elif not self.is_online(name):
                host.state, host.final, host.error = "offline", True, "scout not connected when the job was sent"
            job.hosts[name] = host
        now = utcnow()
        audit = None
        if req.audited:
            detail = {"job": job.id, "hosts": len(job.hosts), "args": job.args}
            audit = AuditRow(req.actor, f"job.{req.kind}", req.target.describe(), True, detail)
        await self.store.create_job(job.to_row(), [h.to_row(job.id, now) for h in job.hosts.values()], audit)
        for sha in req.blobs:
            await self.store.link_blob(job.id, sha)
        self.active[job.id] = job
        self._dispatch(job, req)
        if job.all_final():
            await self._finish(job)
        else:
            loop = asyncio.get_running_loop()
            job.timer = loop.call_later(timeout + self.settings.grace, self._deadline, job)
        return job

    def _refused_by_blacklist(self, command: messages.Command | None, argv: list[str] | None) -> str | None:
        if command is None and argv is None:
            return None
        if command is not None:
            entry = blacklist_mod.check(self.hub.blacklist, command.argv or None, command.shell)
        else:
            entry = blacklist_mod.check(self.hub.blacklist, argv, None)
        return f"refused by the General's blacklist (entry {entry!r})" if entry else None

    def _dispatch(self, job: Job, req: JobRequest) -> None:
        elsewhere: dict[str, list[tuple[str, messages.Task]]] = {}
        for host in job.hosts.values():
            if host.final:
                continue
            self.by_task[host.task_id] = (job, host)
            args = {**req.args, **req.host_args(host.hostname)} if req.host_args else req.args
            task = messages.Task(
                task_id=host.task_id,
                job_id=job.id,
                kind=job.kind,
                timeout=job.timeout,
                stream=job.stream,
                command=req.command,
                args=args,
            )
            if self.hub.send(host.hostname, task):
                continue
            holder = self.remote.holder(host.hostname) if self.remote is not None else None
            if holder is not None:
                elsewhere.setdefault(holder, []).append((host.hostname, task))
            else:
                host.state, host.final, host.error = "offline", True, "scout disconnected before the task was sent"
                self._mark(job, host)
        for gid, items in elsewhere.items():
            self._spawn(self._send_elsewhere(job, gid, items))

    async def _send_elsewhere(self, job: Job, gid: str, items: list[tuple[str, messages.Task]]) -> None:
        assert self.remote is not None
        failed = await self.remote.send_tasks(gid, items)
        for name, why in failed.items():
            host = job.hosts[name]
            if not host.final and host.state == "sent":
                host.state, host.final, host.error = "offline", True, why
                self._mark(job, host)
        if failed and job.state != "done" and job.all_final():
            await self._finish(job)

    # ------------------------------------------------------------ events from scouts
    def on_ack(self, hostname: str, task_id: str, state: str) -> None:
        found = self._lookup(hostname, task_id)
        if found is None:
            return
        job, host = found
        if host.final or state not in ("received", "running") or host.state == "running":
            return
        host.state = state
        self._mark(job, host)

    def on_output(self, hostname: str, msg: messages.Output) -> None:
        found = self._lookup(hostname, msg.task_id)
        if found is not None and found[0].stream:
            text = msg.data.decode("utf-8", "replace")
            found[0].notify({"event": "output", "host": hostname, "stream": msg.stream, "data": text})

    def on_result(self, hostname: str, msg: messages.Result) -> None:
        found = self._lookup(hostname, msg.task_id)
        if found is None:
            self._spawn(self._result_elsewhere(hostname, msg))
            return
        job, host = found
        if host.has_result:
            return  # a resent result: stored once
        late = host.final or job.state == "done"
        self._apply_result(host, msg, late=late)
        self._mark(job, host)
        if job.state != "done" and job.all_final():
            self._spawn(self._finish(job))

    def on_disconnect(self, hostname: str) -> None:
        for job in list(self.active.values()):
            host = job.hosts.get(hostname)
            if host is not None:
                self._lose(job, host, "connection to the scout was lost before it answered")

    def on_task_gone(self, hostname: str, task_id: str) -> None:
        """Another General lost the connection to the scout that held this task."""
        found = self._lookup(hostname, task_id)
        if found is not None:
            self._lose(*found, "connection to the scout was lost before it answered")

    def on_holding(self, hostname: str, holding: list[str]) -> None:
        """A scout (re)connected somewhere, still holding these tasks: any other it was given died."""
        held = set(holding)
        for job in list(self.active.values()):
            host = job.hosts.get(hostname)
            if host is not None and host.task_id not in held and host.state != "sent":
                self._lose(job, host, "the scout came back without the task (it restarted, or its General died)")

    def _lose(self, job: Job, host: HostState, why: str) -> None:
        if host.final or (job.kind in RECONNECTING_KINDS and host.state != "sent"):
            return  # a restarting scout went away on purpose; its next process answers
        host.state, host.final, host.error = "lost", True, why
        self._mark(job, host)
        if job.all_final():
            self._spawn(self._finish(job))

    def _lookup(self, hostname: str, task_id: str) -> tuple[Job, HostState] | None:
        found = self.by_task.get(task_id)
        if found is None or found[1].hostname != hostname:
            return None  # unknown, or a scout answering for a task that was not its own
        return found

    def _apply_result(self, host: HostState, msg: messages.Result, *, late: bool) -> None:
        cap = self.settings.max_output
        host.state = msg.state if msg.state in RESULT_STATES else "failed"
        # Everything below came from a scout: keep only what the store and JSON can hold.
        host.exit_code = msg.exit_code if msg.exit_code is not None and -(2**31) <= msg.exit_code < 2**31 else None
        host.stdout, host.stdout_truncated = msg.stdout[:cap], msg.stdout_truncated or len(msg.stdout) > cap
        host.stderr, host.stderr_truncated = msg.stderr[:cap], msg.stderr_truncated or len(msg.stderr) > cap
        host.error = msg.error if msg.state in RESULT_STATES else f"scout sent an unknown state {msg.state[:32]!r}"
        host.duration = msg.duration if math.isfinite(msg.duration) and msg.duration >= 0 else None
        host.data = jsonable_data(msg.data)
        host.late = late
        host.final = host.has_result = True

    async def _result_elsewhere(self, hostname: str, msg: messages.Result) -> None:
        if self.remote is not None and await self.remote.unknown_result(hostname, msg):
            return  # its owner took it
        await self.store_result(hostname, msg)

    async def store_result(self, hostname: str, msg: messages.Result) -> None:
        """A result for a job no General follows in memory (finished, or its owner is gone)."""
        row = await self.store.job_host_by_task(msg.task_id)
        if row is None or row.hostname != hostname or row.state in RESULT_STATES:
            return
        owner = await self.store.job_owner(row.job_id)
        host = HostState.from_row(row)
        self._apply_result(host, msg, late=owner is None or owner[1] == "done")
        await self.store.save_job_hosts([host.to_row(row.job_id, utcnow())])
        log.info("stored a result directly", extra={"fields": {"job": row.job_id, "host": hostname}})

    # ------------------------------------------------------------ completion
    def _mark(self, job: Job, host: HostState) -> None:
        self.writer.put(host.to_row(job.id, utcnow()))
        job.notify({"event": "host", "host": host.hostname, **host.to_json()})

    def _deadline(self, job: Job) -> None:
        if self.remote is not None:
            self._spawn(self._deadline_after_refresh(job))
            return
        self._expire(job)
        self._spawn(self._finish(job))

    async def _deadline_after_refresh(self, job: Job) -> None:
        """In a cluster, other Generals may have stored results for this job directly (its owner
        was unreachable): take them before naming anyone timed out."""
        found = await self.store.get_job(job.id)
        for row in found[1] if found else []:
            host = job.hosts.get(row.hostname)
            if host is not None and not host.has_result and row.state in RESULT_STATES:
                host.take(HostState.from_row(row))
                self.writer.forget(job.id, row.hostname)
                job.notify({"event": "host", "host": row.hostname, **host.to_json()})
        self._expire(job)
        await self._finish(job)

    def _expire(self, job: Job) -> None:
        waited = job.timeout + self.settings.grace
        for host in job.hosts.values():
            if host.final:
                continue
            # The job is over for the operator: a scout that wakes up later must not start it.
            self._cancel(host)
            if host.state == "sent":
                host.error = f"no ack from the scout within {waited:g}s"
            else:
                host.state, host.error = "timed_out", f"no result within {waited:g}s"
            host.final = True
            self._mark(job, host)

    def _cancel(self, host: HostState) -> None:
        cancel = messages.Cancel(task_id=host.task_id)
        if not self.hub.send(host.hostname, cancel) and self.remote is not None:
            self.remote.cancel(host.hostname, host.task_id)

    async def _finish(self, job: Job) -> None:
        if job.finishing or job.done.is_set():
            return
        job.finishing, job.finished_at = True, utcnow()
        if job.timer is not None:
            job.timer.cancel()
        # Stored first, reported second: nothing a caller is told is done can be lost.
        while True:
            try:
                kept = await self.writer.finish(job.id, job.finished_at, self.gid or None)
                break
            except StoreUnavailable:
                log.warning("store unavailable: will retry finishing a job", extra={"fields": {"job": job.id}})
                await asyncio.sleep(FINISH_RETRY)
        if not kept:
            # We stalled long enough to be taken for dead and another General adopted the job:
            # it finishes it; callers here follow it from the store (our rows are saved).
            log.warning("another General took this job over; following it", extra={"fields": {"job": job.id}})
            self.active.pop(job.id, None)
            job.finishing, job.finished_at = False, None
            self.mirrors.watch(job)
            return
        job.state = "done"
        self.active.pop(job.id, None)
        self._remember(job)
        job.done.set()
        job.notify({"event": "done", "job": job.to_json()})

    def _remember(self, job: Job) -> None:
        self.recent[job.id] = job
        self._recent_hosts += len(job.hosts)
        for host in job.hosts.values():  # a late result for a recent job updates it in memory
            self.by_task.setdefault(host.task_id, (job, host))
        # Bounded by jobs and by hosts: 256 jobs of 10,000 hosts each would be gigabytes.
        while len(self.recent) > 1 and (len(self.recent) > RECENT_JOBS or self._recent_hosts > RECENT_HOSTS):
            _, old = self.recent.popitem(last=False)
            self._recent_hosts -= len(old.hosts)
            for host in old.hosts.values():
                self.by_task.pop(host.task_id, None)

    async def _pruner(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("pruning old jobs failed; will try again")
            await asyncio.sleep(PRUNE_EVERY)

    async def prune(self) -> None:
        cutoff = utcnow() - timedelta(days=self.settings.retention_days)
        gone = await self.store.prune_jobs(cutoff, self.settings.retention_jobs)
        if gone:
            log.info("pruned old jobs", extra={"fields": {"jobs": gone}})
        if self.files is not None:
            await self.files.collect(self.keep_blobs())

    # ------------------------------------------------------------ reading
    async def get(self, job_id: str) -> Job | None:
        job = self.active.get(job_id) or self.recent.get(job_id)
        if job is not None:
            return job
        found = await self.store.get_job(job_id)
        if found is None:
            return None
        if self.remote is not None and found[0].state != "done":
            return self.mirrors.follow(*found)  # another General's job: follow it in the store
        return Job.from_rows(*found)

    async def wait(self, job: Job, seconds: float) -> None:
        if not job.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), seconds)

    async def list(self, limit: int) -> list[dict[str, Any]]:
        out = []
        for row, counts in await self.store.list_jobs(limit):
            out.append(
                {
                    "job": row.id,
                    "kind": row.kind,
                    "state": row.state,
                    "created_at": row.created_at.isoformat(),
                    "created_by": row.created_by,
                    "target": row.target,
                    "counts": counts,
                }
            )
        return out


__all__ = ["FINAL_STATES", "JobManager", "JobRequest", "Remote", "TargetNotAllowed", "jsonable_data"]
