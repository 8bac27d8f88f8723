"""Run the Alembic migrations from inside the running program.

Alembic is synchronous; it is handed the sync face of an async connection through
``run_sync`` and ``config.attributes["connection"]``, which ``migrations/env.py`` picks up.
The migrations directory is found next to this file, never through the working directory.

The same history also works from the command line, for operators:
``alembic -c src/troop/store/alembic.ini -x url=postgresql+asyncpg://... upgrade head``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any constant shared by every General: it names the PostgreSQL advisory lock that makes
# Generals starting together migrate one after the other instead of racing.
PG_LOCK_ID = 0x7472_6F6F_7000  # "troop\0"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _pragma_foreign_keys(conn: Connection, on: bool) -> None:
    # The pragma is ignored inside a transaction, so it goes straight to the driver,
    # before SQLAlchemy begins one.
    raw = conn.connection.dbapi_connection
    assert raw is not None  # checked out, so never None here
    cursor = raw.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON" if on else "PRAGMA foreign_keys=OFF")
    finally:
        cursor.close()


@contextlib.contextmanager
def migration_transaction(conn: Connection) -> Iterator[None]:
    """The transaction every migration run happens in, from the program or the CLI."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # SQLite ALTERs are done by copying a table and dropping the old one; with
        # foreign keys on, dropping jobs would cascade and empty job_hosts.
        _pragma_foreign_keys(conn, on=False)
    try:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_ID)))
            yield
    finally:
        if sqlite:
            _pragma_foreign_keys(conn, on=True)


def _upgrade(conn: Connection) -> None:
    with migration_transaction(conn):
        command.upgrade(alembic_config(conn), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the database to the newest revision, in one transaction (both dialects)."""
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def _migrate_url(url: str) -> None:
    from troop.store.store import Store

    store = await Store.open(url, migrate=True)
    await store.close()


def main() -> None:
    """`python -m troop.store.migrate`: migrate the store named by TROOP_STORE_URL.

    The General runs this in a short-lived child so that its own long-lived process never
    loads Alembic (about 12 MB of resident memory); the URL travels in the environment so
    a password never shows in the process list.
    """
    import asyncio
    import os
    import sys

    url = os.environ.get("TROOP_STORE_URL", "")
    if not url:
        print("troop.store.migrate: TROOP_STORE_URL is not set", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(_migrate_url(url))
    except Exception as exc:
        print(f"troop.store.migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
