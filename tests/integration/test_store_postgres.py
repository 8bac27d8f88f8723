"""The store against a real PostgreSQL: the backend-neutral unit tests again, plus what
only shows with a server (Generals migrating at once, writers in separate processes).

The server comes from the `postgres_url` fixture (started by the test run, or
TROOP_TEST_PG_URL); every test gets a database of its own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from troop.store import JobHostRow, Store
from troop.store.migrate import current_revision, head_revision


def _load_unit_tests() -> object:
    # Loaded by path: tests/ is not a package, and the unit module must stay importable
    # on its own.
    path = Path(__file__).resolve().parent.parent / "unit" / "test_store.py"
    spec = importlib.util.spec_from_file_location("troop_unit_test_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_unit = _load_unit_tests()
job = _unit.job  # type: ignore[attr-defined]
job_hosts = _unit.job_hosts  # type: ignore[attr-defined]
at = _unit.at  # type: ignore[attr-defined]

# Imported test functions are collected here and resolve the store fixtures below.
NEUTRAL = [
    "test_open_migrates_to_head",
    "test_reopen_keeps_everything",
    "test_host_upsert_get_and_list",
    "test_host_datetimes_are_aware_utc",
    "test_naive_datetime_is_refused",
    "test_set_host_state",
    "test_touch_hosts",
    "test_delete_host_takes_its_denied_keys",
    "test_denied_key_upsert_counts_attempts",
    "test_create_and_get_job",
    "test_create_job_is_atomic",
    "test_save_job_hosts_writes_every_result_column",
    "test_finish_list_and_unfinished",
    "test_job_host_by_task",
    "test_prune_jobs",
    "test_tokens",
    "test_audit",
    "test_general_state",
    "test_concurrent_batch_saves",
    "test_concurrent_mixed_calls",
    "test_migration_matches_tables",
    "test_state_once_keeps_the_first_value",
    "test_generals_register_and_forget",
    "test_job_ownership_claims_have_one_winner",
    "test_finish_job_saves_its_last_rows_in_the_same_transaction",
    "test_finish_job_as_owner_only_while_it_owns_the_job",
]
globals().update({name: getattr(_unit, name) for name in NEUTRAL})


@pytest.fixture
async def store_url(postgres_url: str) -> AsyncIterator[str]:
    name = f"troop_test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


async def test_generals_starting_together_migrate_once(store_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(store_url) for _ in range(4)))
    try:
        for s in stores:
            assert await current_revision(s._engine) == head_revision()
    finally:
        for s in stores:
            await s.close()


async def test_two_generals_saving_overlapping_batches(store_url: str) -> None:
    """Two engines (two Generals) writing the same rows in random orders never deadlock."""
    a, b = await Store.open(store_url), await Store.open(store_url)
    try:
        names = [f"h{i:03d}" for i in range(40)]
        await a.create_job(job("j1"), job_hosts("j1", names))

        async def writer(s: Store, i: int) -> None:
            rows = [JobHostRow("j1", n, task_id="", state="running", data={"w": i}, updated_at=at(i)) for n in names]
            random.shuffle(rows)
            await s.save_job_hosts(rows)

        await asyncio.gather(*(writer(a if i % 2 else b, i) for i in range(40)))
        got = await b.get_job("j1")
        assert got is not None
        assert len({h.data["w"] for h in got[1]}) == 1
    finally:
        await a.close()
        await b.close()


async def test_ping_and_column_types(store: Store) -> None:
    await store.ping()

    def column_types(conn: sa.Connection) -> dict[str, sa.types.TypeEngine[object]]:
        inspector = sa.inspect(conn)
        return {
            f"{table}.{col['name']}": col["type"]
            for table in ("hosts", "audit")
            for col in inspector.get_columns(table)
        }

    async with store._read() as conn:
        types = await conn.run_sync(column_types)
    first_seen = types["hosts.first_seen"]
    assert isinstance(first_seen, sa.DateTime) and first_seen.timezone  # timestamptz
    assert isinstance(types["hosts.public_key"], sa.LargeBinary)  # bytea
    assert isinstance(types["audit.id"], sa.BigInteger)
