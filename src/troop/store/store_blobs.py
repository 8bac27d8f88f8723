"""Queries on FileManager blobs and the jobs that refer to them (reference counting)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from troop.store.store_base import StoreBase
from troop.store.tables import blobs, job_blobs


class BlobQueries(StoreBase):
    async def add_blob(self, sha256: str, size: int, when: datetime) -> None:
        """Record an uploaded blob (again: an upload of known content refreshes its age)."""
        stmt = self._upsert(blobs).values(sha256=sha256, size=size, created_at=when)
        stmt = stmt.on_conflict_do_update(index_elements=[blobs.c.sha256], set_={"created_at": when})
        async with self._write() as conn:
            await conn.execute(stmt)

    async def get_blob_size(self, sha256: str) -> int | None:
        async with self._read() as conn:
            return (await conn.execute(sa.select(blobs.c.size).where(blobs.c.sha256 == sha256))).scalar()

    async def link_blob(self, job_id: str, sha256: str) -> None:
        stmt = self._upsert(job_blobs).values(job_id=job_id, sha256=sha256).on_conflict_do_nothing()
        async with self._write() as conn:
            await conn.execute(stmt)

    async def orphan_blobs(self, older_than: datetime) -> list[str]:
        """Blobs no job refers to, uploaded before `older_than`."""
        used = sa.select(job_blobs.c.sha256).where(job_blobs.c.sha256 == blobs.c.sha256).exists()
        stmt = sa.select(blobs.c.sha256).where(~used, blobs.c.created_at < older_than)
        async with self._read() as conn:
            return list((await conn.execute(stmt)).scalars())

    async def delete_blob(self, sha256: str) -> None:
        async with self._write() as conn:
            await conn.execute(sa.delete(blobs).where(blobs.c.sha256 == sha256))
