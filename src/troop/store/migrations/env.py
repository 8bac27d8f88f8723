"""Alembic environment for the Troop store.

Two ways in:
- From the program (troop.store.migrate): the caller hands over a sync connection,
  already inside the migration transaction, as ``config.attributes["connection"]``.
  Nothing here may call asyncio.run or touch logging then: an event loop is running
  and the program owns its logging.
- From the alembic command line: the URL comes from ``-x url=...`` or sqlalchemy.url,
  and the engine is built exactly as the Store builds it (same SQLite pragmas).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from troop.store.migrate import migration_transaction
from troop.store.store_base import WRITE_OPTION, make_engine
from troop.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _run_cli_sync(connection: Connection) -> None:
    with migration_transaction(connection):
        _run(connection)


async def _run_cli() -> None:
    engine = make_engine(_url())
    try:
        async with engine.execution_options(**{WRITE_OPTION: True}).connect() as conn:
            await conn.run_sync(_run_cli_sync)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


_given = config.attributes.get("connection")
if _given is not None:
    _run(_given)
elif context.is_offline_mode():
    _run_offline()
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_cli())
