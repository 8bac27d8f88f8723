"""Write-behind of job results: rows are saved in batches, off the path that applies them.

Results are applied in memory first (so waiters and streams see them at once); this writer
saves them soon after, in one transaction per batch. A job is only reported done after
`flush()` has committed its rows, so nothing a caller has seen can be lost by a restart.
"""

from __future__ import annotations

import asyncio
import logging

from troop.store import JobHostRow, Store, StoreUnavailable

log = logging.getLogger("troop.general.jobs")


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
            if not self._dirty:
                return
            rows, self._dirty = list(self._dirty.values()), {}
            try:
                await self.store.save_job_hosts(rows)
            except StoreUnavailable:
                for row in rows:  # keep them for the next try, unless superseded meanwhile
                    self._dirty.setdefault((row.job_id, row.hostname), row)
                raise
            except Exception:
                await self._save_one_by_one(rows)

    async def _save_one_by_one(self, rows: list[JobHostRow]) -> None:
        """A batch the store refused: save what it takes; a row it never takes is logged and dropped,
        so one bad row cannot hold back every other job's results."""
        for row in rows:
            try:
                await self.store.save_job_hosts([row])
            except StoreUnavailable:
                self._dirty.setdefault((row.job_id, row.hostname), row)
            except Exception as exc:
                log.error(
                    "dropped a result the store refused",
                    extra={
                        "fields": {"job": row.job_id, "host": row.hostname, "why": f"{type(exc).__name__}: {exc}"[:200]}
                    },
                )

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not save job results; will retry")
                await asyncio.sleep(1.0)
                self._wanted.set()
