"""Jobs another General follows, as this General sees them: read from the store, polled.

Any General answers for any job. A job still running elsewhere is mirrored here: a waiter
or an event stream on this General gets host events and the final result from the store
as the owner writes them (live output lines stream only from the owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from troop.general.jobstate import HostState, Job
from troop.store import JobHostRow, JobRow, Store

log = logging.getLogger("troop.general.jobs")
POLL = 0.25
MAX_MIRRORS = 256
GIVE_UP_AFTER = 120.0  # seconds past a job's deadline: by then a survivor has adopted it


class JobMirrors:
    def __init__(self, store: Store, grace: float) -> None:
        self.store = store
        self.grace = grace
        self._jobs: dict[str, tuple[Job, asyncio.Task[None]]] = {}

    def follow(self, row: JobRow, hosts: list[JobHostRow]) -> Job:
        known = self._jobs.get(row.id)
        if known is not None:
            return known[0]
        job = Job.from_rows(row, hosts)
        self.watch(job)
        return job

    def watch(self, job: Job) -> None:
        """Follow a job object callers already hold (it was ours, another General took it over)."""
        if job.id in self._jobs:
            return
        while len(self._jobs) >= MAX_MIRRORS:
            oldest = next(iter(self._jobs))
            self._jobs.pop(oldest)[1].cancel()
        self._jobs[job.id] = (job, asyncio.create_task(self._poll(job)))

    def stop(self) -> None:
        for _, task in self._jobs.values():
            task.cancel()
        self._jobs.clear()

    async def _poll(self, job: Job) -> None:
        give_up = time.monotonic() + job.timeout + self.grace + GIVE_UP_AFTER
        try:
            while not job.done.is_set() and time.monotonic() < give_up:
                await asyncio.sleep(POLL)
                with contextlib.suppress(Exception):  # a store outage: try again next round
                    found = await self.store.get_job(job.id)
                    if found is None:
                        break
                    self._update(job, *found)
        finally:
            self._jobs.pop(job.id, None)

    @staticmethod
    def _update(job: Job, row: JobRow, hosts: list[JobHostRow]) -> None:
        for host_row in hosts:
            host = job.hosts.get(host_row.hostname)
            if host is None:
                continue
            fresh = HostState.from_row(host_row)
            if (fresh.state, fresh.error, fresh.has_result) != (host.state, host.error, host.has_result):
                host.take(fresh)
                job.notify({"event": "host", "host": host.hostname, **host.to_json()})
        if row.state == "done":
            job.state, job.finished_at, job.owner = "done", row.finished_at, row.owner
            job.done.set()
            job.notify({"event": "done", "job": job.to_json()})
