"""Write-behind of job results: rows are saved in batches, off the path that applies them.

Results are applied in memory first (so waiters and streams see them at once); this writer
saves them soon after, in one transaction per batch. A job is only reported done after
`flush()` has committed its rows, so nothing a caller has seen can be lost by a restart.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from troop.store import JobHostRow, Store, StoreUnavailable

log = logging.getLogger("troop.general.jobs")
# A row changed again within this time is written once: a scout's ack and its result a
# moment later cost one transaction, not two (and the job's last rows ride with finish()).
BATCH_DELAY = 0.005


class JobWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._dirty: dict[tuple[str, str], JobHostRow] = {}
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()

    def put(self, row: JobHostRow) -> None:
        self._dirty[(row.job_id, row.hostname)] = row
        self._wanted.set()

    def forget(self, job_id: str, hostname: str) -> None:
        self._dirty.pop((job_id, hostname), None)

    async def flush(self) -> None:
        async with self._lock:
            if self._dirty:
                await self._save(list(self._dirty.values()))

    async def finish(self, job_id: str, when: datetime, owner: str | None = None) -> bool:
        """Save every pending row and mark the job done, in one transaction. With `owner`, the
        job is only marked done while that General owns it (see Store.finish_job)."""
        async with self._lock:
            rows = list(self._dirty.values())
            try:
                done = await self.store.finish_job(job_id, when, rows, owner)
            except StoreUnavailable:
                raise  # rows stay pending: the next try takes them
            except Exception:
                await self._save(rows)
                return await self.store.finish_job(job_id, when, owner=owner)
            self._taken(rows)
            return done

    async def _save(self, rows: list[JobHostRow]) -> None:
        try:
            await self.store.save_job_hosts(rows)
        except StoreUnavailable:
            raise  # kept pending for the next try
        except Exception:
            await self._save_one_by_one(rows)
        else:
            self._taken(rows)

    def _taken(self, rows: list[JobHostRow]) -> None:
        for row in rows:  # saved, unless superseded meanwhile (then the newer one stays pending)
            key = (row.job_id, row.hostname)
            if self._dirty.get(key) is row:
                del self._dirty[key]

    async def _save_one_by_one(self, rows: list[JobHostRow]) -> None:
        """A batch the store refused: save what it takes; a row it never takes is logged and dropped,
        so one bad row cannot hold back every other job's results."""
        for row in rows:
            try:
                await self.store.save_job_hosts([row])
                self._taken([row])
            except StoreUnavailable:
                pass  # still pending
            except Exception as exc:
                self._taken([row])
                log.error(
                    "dropped a result the store refused",
                    extra={
                        "fields": {"job": row.job_id, "host": row.hostname, "why": f"{type(exc).__name__}: {exc}"[:200]}
                    },
                )

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            await asyncio.sleep(BATCH_DELAY)
            self._wanted.clear()
            try:
                await self.flush()
            except StoreUnavailable as exc:
                log.warning("could not save job results; will retry", extra={"fields": {"why": str(exc)}})
                await asyncio.sleep(1.0)
                self._wanted.set()
            except Exception:
                log.exception("could not save job results; will retry")
                await asyncio.sleep(1.0)
                self._wanted.set()
