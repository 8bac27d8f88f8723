"""Queries on hosts and denied keys."""

from __future__ import annotations

import functools
from datetime import datetime

import sqlalchemy as sa

from troop.store.rows import DeniedKeyRow, HostRow, utcnow
from troop.store.store_base import StoreBase, Upsert, params, to_rows

# Aliased: the method Store.denied_keys would read like the table.
from troop.store.tables import denied_keys as denied_table
from troop.store.tables import hosts

# Bound parameters per IN list; both SQLite (32766) and asyncpg (32767) cap the total.
IN_CHUNK = 10_000


class HostQueries(StoreBase):
    async def all_hosts(self) -> list[HostRow]:
        async with self._read() as conn:
            result = await conn.execute(sa.select(hosts).order_by(hosts.c.hostname))
            return to_rows(HostRow, result)

    async def get_host(self, hostname: str) -> HostRow | None:
        async with self._read() as conn:
            result = await conn.execute(sa.select(hosts).where(hosts.c.hostname == hostname))
            found = to_rows(HostRow, result)
        return found[0] if found else None

    # Upserts are built once per Store: constructing one (the EXCLUDED alias and its
    # columns) costs about as much CPU as a SQLite round trip.
    @functools.cached_property
    def _host_upsert(self) -> Upsert:
        stmt = self._upsert(hosts)
        return stmt.on_conflict_do_update(
            index_elements=[hosts.c.hostname],
            set_={c.name: stmt.excluded[c.name] for c in hosts.c if not c.primary_key},
        )

    @functools.cached_property
    def _denied_upsert(self) -> Upsert:
        stmt = self._upsert(denied_table)
        return stmt.on_conflict_do_update(
            index_elements=[denied_table.c.hostname, denied_table.c.fingerprint],
            set_={
                "attempts": denied_table.c.attempts + 1,
                "last_seen": stmt.excluded.last_seen,
                "public_key": stmt.excluded.public_key,
            },
        )

    async def upsert_host(self, row: HostRow) -> None:
        """Insert the host, or replace every column of the existing one."""
        async with self._write() as conn:
            await conn.execute(self._host_upsert, params(row))

    async def set_host_state(self, hostname: str, state: str) -> bool:
        """Returns False if there is no such host."""
        stmt = (
            sa.update(hosts)
            .where(hosts.c.hostname == hostname)
            .values(state=state, updated_at=utcnow())
        )
        async with self._write() as conn:
            result = await conn.execute(stmt)
        return result.rowcount > 0

    async def touch_hosts(self, hostnames: list[str], when: datetime) -> None:
        """Set last_seen; one statement per IN_CHUNK names, all in one transaction."""
        if not hostnames:
            return
        async with self._write() as conn:
            for i in range(0, len(hostnames), IN_CHUNK):
                chunk = hostnames[i : i + IN_CHUNK]
                await conn.execute(
                    sa.update(hosts).where(hosts.c.hostname.in_(chunk)).values(last_seen=when)
                )

    async def delete_host(self, hostname: str) -> bool:
        """Delete the host and its denied keys; True if anything was deleted."""
        async with self._write() as conn:
            gone = await conn.execute(sa.delete(hosts).where(hosts.c.hostname == hostname))
            denied = await conn.execute(
                sa.delete(denied_table).where(denied_table.c.hostname == hostname)
            )
        return gone.rowcount + denied.rowcount > 0

    async def add_denied_key(
        self, hostname: str, public_key: bytes, fingerprint: str, when: datetime
    ) -> None:
        """Record a refused key; a repeat of the same key bumps attempts and last_seen."""
        values = {
            "hostname": hostname,
            "public_key": public_key,
            "fingerprint": fingerprint,
            "first_seen": when,
            "last_seen": when,
            "attempts": 1,
        }
        async with self._write() as conn:
            await conn.execute(self._denied_upsert, values)

    async def denied_keys(self) -> list[DeniedKeyRow]:
        stmt = sa.select(denied_table).order_by(denied_table.c.hostname, denied_table.c.id)
        async with self._read() as conn:
            return to_rows(DeniedKeyRow, await conn.execute(stmt))
