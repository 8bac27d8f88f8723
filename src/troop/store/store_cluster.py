"""Queries of cluster mode: the Generals' register, job ownership, shared secrets."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from troop.store.rows import GeneralRow, JobRow, utcnow
from troop.store.store_base import StoreBase, params, to_rows
from troop.store.tables import general_state, generals, jobs


class ClusterQueries(StoreBase):
    async def state_once(self, key: str, value: bytes) -> bytes:
        """Store `value` under `key` unless a value is there already; return the stored one.

        Every General of a cluster calls this with its own candidate at start; the first
        insert wins and all of them get the same answer (INSERT ... ON CONFLICT DO NOTHING)."""
        stmt = self._upsert(general_state).on_conflict_do_nothing(index_elements=[general_state.c.key])
        async with self._write() as conn:
            await conn.execute(stmt, {"key": key, "value": value, "updated_at": utcnow()})
            stored = await conn.scalar(sa.select(general_state.c.value).where(general_state.c.key == key))
        assert stored is not None
        return bytes(stored)

    async def general_beat(self, row: GeneralRow) -> None:
        """Register or refresh a General (its seen_at and scout count)."""
        stmt = self._upsert(generals)
        stmt = stmt.on_conflict_do_update(
            index_elements=[generals.c.id],
            set_={name: stmt.excluded[name] for name in ("seen_at", "online", "api", "scouts")},
        )
        async with self._write() as conn:
            await conn.execute(stmt, params(row))

    async def all_generals(self) -> list[GeneralRow]:
        async with self._read() as conn:
            return to_rows(GeneralRow, await conn.execute(sa.select(generals).order_by(generals.c.started_at)))

    async def forget_generals(self, seen_before: datetime) -> int:
        """Drop registrations not refreshed since `seen_before` (long-dead processes)."""
        async with self._write() as conn:
            result = await conn.execute(sa.delete(generals).where(generals.c.seen_at < seen_before))
        return int(result.rowcount)

    async def job_owner(self, job_id: str) -> tuple[str, str] | None:
        """(owner, state) of a job, or None when it does not exist (any more)."""
        stmt = sa.select(jobs.c.owner, jobs.c.state).where(jobs.c.id == job_id)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def orphaned_jobs(self, live: list[str]) -> list[JobRow]:
        """Running jobs whose owner is not among the `live` General ids."""
        stmt = sa.select(jobs).where(jobs.c.state == "running", jobs.c.owner.not_in(live)).order_by(jobs.c.created_at)
        async with self._read() as conn:
            return to_rows(JobRow, await conn.execute(stmt))

    async def claim_job(self, job_id: str, old_owner: str, new_owner: str) -> bool:
        """Take a running job over from `old_owner`; True for the one General that wins."""
        stmt = (
            sa.update(jobs)
            .where(jobs.c.id == job_id, jobs.c.owner == old_owner, jobs.c.state == "running")
            .values(owner=new_owner)
        )
        async with self._write() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount) == 1
