"""Queries on jobs and their per-host rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from troop.store.rows import AuditRow, JobHostRow, JobRow
from troop.store.store_base import StoreBase, params, to_rows
from troop.store.tables import audit as audit_table
from troop.store.tables import job_hosts, jobs

# Columns save_job_hosts writes. task_id is left out: it names the task for its life.
RESULT_COLUMNS = (
    "state",
    "exit_code",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "error",
    "duration",
    "late",
    "data",
    "updated_at",
)

# Jobs deleted per transaction by prune_jobs, so result writers never wait long.
PRUNE_BATCH = 200

_SAVE = sa.update(job_hosts).where(
    job_hosts.c.job_id == sa.bindparam("key_job_id"),
    job_hosts.c.hostname == sa.bindparam("key_hostname"),
)


def _save_batch(rows: Sequence[JobHostRow]) -> list[dict[str, object]]:
    ordered = sorted(rows, key=lambda r: (r.job_id, r.hostname))
    return [
        {
            "key_job_id": r.job_id,
            "key_hostname": r.hostname,
            **{name: getattr(r, name) for name in RESULT_COLUMNS},
        }
        for r in ordered
    ]


class JobQueries(StoreBase):
    async def create_job(self, job: JobRow, hosts: list[JobHostRow], audit: AuditRow | None = None) -> None:
        """The job, all its host rows and its audit row, in one transaction."""
        async with self._write() as conn:
            await conn.execute(sa.insert(jobs), [params(job)])
            if hosts:
                await conn.execute(sa.insert(job_hosts), [params(h) for h in hosts])
            if audit is not None:
                await conn.execute(sa.insert(audit_table), [params(audit, skip=("id",))])

    async def save_job_hosts(self, rows: list[JobHostRow]) -> None:
        """Write the result columns of existing rows in one transaction.

        Rows whose job was pruned match nothing and are silently dropped.
        """
        if not rows:
            return
        # A fixed order makes concurrent PostgreSQL transactions lock rows in the same
        # order, so two overlapping batches wait for each other instead of deadlocking.
        async with self._write() as conn:
            await conn.execute(_SAVE, _save_batch(rows))

    async def finish_job(
        self, job_id: str, when: datetime, rows: Sequence[JobHostRow] = (), owner: str | None = None
    ) -> bool:
        """Mark the job done, saving `rows` (as save_job_hosts) in the same transaction.

        With `owner`, only while that General still owns it (a cluster may have handed the job
        to another): False, and the rows saved all the same, when it does not."""
        stmt = sa.update(jobs).where(jobs.c.id == job_id).values(state="done", finished_at=when)
        if owner is not None:
            stmt = stmt.where(jobs.c.owner == owner)
        async with self._write() as conn:
            if rows:
                await conn.execute(_SAVE, _save_batch(rows))
            result = await conn.execute(stmt)
        return int(result.rowcount) == 1

    async def get_job(self, job_id: str) -> tuple[JobRow, list[JobHostRow]] | None:
        async with self._read() as conn:
            found = to_rows(JobRow, await conn.execute(sa.select(jobs).where(jobs.c.id == job_id)))
            if not found:
                return None
            stmt = (
                sa.select(job_hosts)
                .where(job_hosts.c.job_id == job_id)
                .order_by(job_hosts.c.hostname)
            )
            return found[0], to_rows(JobHostRow, await conn.execute(stmt))

    async def list_jobs(
        self, limit: int = 50, before: datetime | None = None
    ) -> list[tuple[JobRow, dict[str, int]]]:
        """Newest first, each with its number of hosts in every state.

        ``before`` pages backwards: pass the created_at of the last job of a page.
        """
        stmt = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(jobs.c.created_at < before)
        async with self._read() as conn:
            found = to_rows(JobRow, await conn.execute(stmt))
            if not found:
                return []
            counts_stmt = (
                sa.select(job_hosts.c.job_id, job_hosts.c.state, sa.func.count())
                .where(job_hosts.c.job_id.in_([j.id for j in found]))
                .group_by(job_hosts.c.job_id, job_hosts.c.state)
            )
            counts: dict[str, dict[str, int]] = defaultdict(dict)
            for job_id, state, n in await conn.execute(counts_stmt):
                counts[job_id][state] = n
        return [(j, counts.get(j.id, {})) for j in found]

    async def unfinished_jobs(self) -> list[tuple[JobRow, list[JobHostRow]]]:
        """Jobs still running (for a General taking over after a restart), oldest first."""
        running = sa.select(jobs.c.id).where(jobs.c.state == "running")
        async with self._read() as conn:
            stmt = sa.select(jobs).where(jobs.c.state == "running").order_by(jobs.c.created_at)
            found = to_rows(JobRow, await conn.execute(stmt))
            hosts_stmt = (
                sa.select(job_hosts)
                .where(job_hosts.c.job_id.in_(running))
                .order_by(job_hosts.c.job_id, job_hosts.c.hostname)
            )
            by_job: dict[str, list[JobHostRow]] = defaultdict(list)
            for h in to_rows(JobHostRow, await conn.execute(hosts_stmt)):
                by_job[h.job_id].append(h)
        return [(j, by_job.get(j.id, [])) for j in found]

    async def job_host_by_task(self, task_id: str) -> JobHostRow | None:
        stmt = sa.select(job_hosts).where(job_hosts.c.task_id == task_id)
        async with self._read() as conn:
            found = to_rows(JobHostRow, await conn.execute(stmt))
        return found[0] if found else None

    async def prune_jobs(self, older_than: datetime, keep_max: int) -> int:
        """Delete finished jobs created before older_than or beyond the newest keep_max.

        The newest keep_max are counted among all jobs; running jobs are never deleted.
        Host rows go with their job (ON DELETE CASCADE). Returns the number of jobs deleted.
        """
        newest = (
            sa.select(jobs.c.id)
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(max(keep_max, 0))
        )
        doomed = (
            sa.select(jobs.c.id)
            .where(
                jobs.c.state == "done",
                sa.or_(jobs.c.created_at < older_than, jobs.c.id.not_in(newest)),
            )
            .limit(PRUNE_BATCH)
        )
        total = 0
        while True:
            async with self._write() as conn:
                ids = list((await conn.execute(doomed)).scalars())
                if ids:
                    result = await conn.execute(sa.delete(jobs).where(jobs.c.id.in_(ids)))
                    total += result.rowcount
            if len(ids) < PRUNE_BATCH:
                return total
