"""The engine, its SQLite tuning, and the helpers every group of queries shares.

Transactions on SQLite: the sqlite3 driver's legacy mode only opens a transaction
before DML, so DDL (migrations) and SELECT-then-write sequences would run outside one.
The driver's BEGIN is switched off and SQLAlchemy's "begin" event issues it instead:
plain BEGIN for reads, BEGIN IMMEDIATE for writes so a writer takes the write lock up
front and never fails half-way through on a lock upgrade. Writers in this process also
queue on an asyncio lock, which is cheaper than SQLite's sleep-and-retry busy handler.
PostgreSQL needs none of this: it gets concurrent writers and row locks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from troop.errors import ConfigError, TroopError

R = TypeVar("R")

# Execution option that marks a connection as a writer (see _on_sqlite_begin).
WRITE_OPTION = "troop_write"

SQLITE_PRAGMAS = (
    # Set first so that switching to WAL waits for other processes instead of failing.
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    # With WAL this loses at most the last commits on power loss, never corrupts.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
STORE_TIMEOUT = 5.0  # seconds to get a PostgreSQL connection before the call fails

Upsert = sqlite.Insert | postgresql.Insert


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the "begin" event issues BEGIN instead
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _is_memory(database: str | None) -> bool:
    return not database or database == ":memory:"


def make_engine(url: str) -> AsyncEngine:
    """An async engine for a supported URL; raises ConfigError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL: {exc}") from exc
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise ConfigError(
            f"unsupported store {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    kw: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not _is_memory(db) and db is not None and not db.startswith("file:"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    else:
        # Scale-out: survive a PostgreSQL restart or fail-over without a General restart, and
        # while it is down fail within seconds (the API answers 503) instead of hanging.
        kw["pool_pre_ping"] = True
        kw["pool_timeout"] = STORE_TIMEOUT
        if parsed.get_driver_name() == "asyncpg":
            kw["connect_args"] = {"timeout": STORE_TIMEOUT, "command_timeout": 4 * STORE_TIMEOUT}
    try:
        engine = create_async_engine(parsed, **kw)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"store driver missing for {parsed.drivername!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


class StoreBase:
    """Holds the engine; the query mixins build on its _read/_write helpers."""

    url: str

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self._engine = engine
        # Same pool; the option makes SQLite transactions BEGIN IMMEDIATE.
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._dialect = engine.dialect.name
        self._write_lock: asyncio.Lock | None = None
        self._read_lock: asyncio.Lock | None = None
        if self._dialect == "sqlite":
            self._write_lock = asyncio.Lock()
            if _is_memory(engine.url.database):
                # A memory database lives on one shared connection: one user at a time.
                self._read_lock = self._write_lock

    def __repr__(self) -> str:
        shown = make_url(self.url).render_as_string(hide_password=True)
        return f"<{type(self).__name__} {shown}>"

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with contextlib.AsyncExitStack() as stack:
            if self._read_lock is not None:
                await stack.enter_async_context(self._read_lock)
            yield await _connected(stack, self._engine.connect())

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed on normal exit and rolled back on error."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            yield await _connected(stack, self._writer.begin())

    def _upsert(self, table: sa.Table) -> Upsert:
        """INSERT with the dialect's ON CONFLICT support (same API on both dialects)."""
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        return postgresql.insert(table)


class StoreUnavailable(TroopError):
    """The database cannot be reached now; callers answer 503 and try again later."""


async def _connected(stack: contextlib.AsyncExitStack, acquire: Any) -> AsyncConnection:
    # Foreign errors stop here: a refused or timed-out connection is one error the General knows.
    try:
        conn: AsyncConnection = await stack.enter_async_context(acquire)
    except (OSError, TimeoutError, sa.exc.TimeoutError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise StoreUnavailable(f"the store is unavailable: {str(exc).splitlines()[0][:200]}") from exc
    return conn


_FIELDS: dict[type, tuple[str, ...]] = {}


def params(row: Any, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """A dataclass row as bind parameters (shallow: dataclasses.asdict deep-copies)."""
    names = _FIELDS.get(type(row))
    if names is None:
        names = _FIELDS[type(row)] = tuple(f.name for f in fields(row))
    skipped = set(skip)
    return {n: getattr(row, n) for n in names if n not in skipped}


def to_row(make: Callable[..., R], mapping: Mapping[str, Any]) -> R:
    return make(**mapping)


def to_rows(make: Callable[..., R], result: sa.Result[Any]) -> list[R]:
    return [make(**r._asdict()) for r in result]
