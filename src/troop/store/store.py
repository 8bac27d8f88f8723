"""The Store: the one object through which the General reads and writes durable state.

The queries live in mixins by subject (store_hosts, store_jobs, store_tokens); this
module opens, checks and closes. One Store is shared by every task of a General's event
loop: each method takes its own connection (and, on SQLite, its own place in the writer
queue), so calls may overlap freely.
"""

from __future__ import annotations

from typing import Self

import sqlalchemy as sa

from troop.store.store_base import make_engine
from troop.store.store_blobs import BlobQueries
from troop.store.store_cluster import ClusterQueries
from troop.store.store_hosts import HostQueries
from troop.store.store_jobs import JobQueries
from troop.store.store_tokens import TokenQueries


class Store(HostQueries, JobQueries, TokenQueries, BlobQueries, ClusterQueries):
    """Durable state on SQLite (``sqlite+aiosqlite:///path``) or PostgreSQL
    (``postgresql+asyncpg://...``), with the same schema and behaviour on both."""

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Self:
        """Create the engine and, when ``migrate``, bring the schema to the newest version.

        Without ``migrate`` nothing connects yet: the first query does. Raises
        ConfigError for a malformed URL, an unsupported database or a missing driver.
        """
        engine = make_engine(url)
        store = cls(url, engine)
        if migrate:
            from troop.store.migrate import upgrade  # Alembic only when migrating

            try:
                await upgrade(store._writer)
            except BaseException:
                await engine.dispose()
                raise
        return store

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        """Round-trip to the database; raises (sqlalchemy.exc.DBAPIError, OSError) if down."""
        async with self._read() as conn:
            await conn.execute(sa.select(1))
