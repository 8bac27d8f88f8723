"""A cluster of real processes: 3 Generals on a fresh PostgreSQL database and a real
nats-server, a standalone FileManager, and 45 scouts that know every General.

`cluster` is shared by the package (starting 49 processes takes a while) and healed before
each test: NATS up, every General and scout running, every scout connected, and at least
MIN_EACH scouts on each General. Tests that need a cluster of their own take `new_cluster`
(its own database and nats-server, nothing started).

Missing nats-server or PostgreSQL: skipped, except in CI (env CI set), where it fails.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.cluster.harness import Cluster
from tests.natsserver import NatsServer, nats_for_a_test

GENERALS = 3
SCOUTS = [f"s{i:02d}" for i in range(1, 46)]
MIN_EACH = 5

_live: list[Cluster] = []  # clusters whose logs a failing test's report gets
_failed: list[Cluster] = []  # clusters that failed while starting: reported once, by the next report


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


def _database(postgres_url: str) -> Generator[str, None, None]:
    """A new, empty database on the test PostgreSQL; dropped afterwards (connections and all)."""
    name = f"troop_cluster_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="package")
def cluster_db(postgres_url: str) -> Iterator[str]:
    yield from _database(postgres_url)


@pytest.fixture(scope="package")
def cluster_nats() -> Iterator[NatsServer]:
    yield from nats_for_a_test()


@pytest.fixture(scope="package")
def cluster_package(
    tmp_path_factory: pytest.TempPathFactory, cluster_db: str, cluster_nats: NatsServer
) -> Iterator[Cluster]:
    with _tracked(Cluster(tmp_path_factory.mktemp("cluster"), cluster_db, cluster_nats, print_logs=False)) as c:
        c.start(GENERALS, SCOUTS)
        yield c


@pytest.fixture
def cluster(cluster_package: Cluster) -> Cluster:
    """The shared cluster, whole again: 3 Generals (A, B, C = index 0, 1, 2), 45 scouts s01..s45."""
    cluster_package.heal(min_each=MIN_EACH)
    return cluster_package


@pytest.fixture
def new_cluster(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    """A cluster of this test's own (database, nats-server), nothing started yet."""
    db = _database(postgres_url)
    nats = nats_for_a_test()
    try:
        with _tracked(Cluster(tmp_path / "cluster", next(db), next(nats), print_logs=False)) as c:
            yield c
    finally:
        nats.close()
        db.close()


@contextmanager
def _tracked(c: Cluster) -> Iterator[Cluster]:
    _live.append(c)
    try:
        with c:
            yield c
    except BaseException:
        _failed.append(c)
        raise
    finally:
        _live.remove(c)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failure, add the tails of the cluster's logs to the report."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for c in [*_live, *_failed]:
            try:
                report.sections.append(("cluster logs", c.report()))
            except Exception as exc:
                report.sections.append(("cluster logs", f"could not read the logs: {exc!r}"))
        _failed.clear()
