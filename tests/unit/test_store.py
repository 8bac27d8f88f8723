"""The store against real SQLite files.

The tests that take the ``store_url`` / ``store`` fixtures are backend-neutral: the
PostgreSQL integration suite imports them and runs them again against a real server.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from troop.errors import ConfigError
from troop.store import (
    AuditRow,
    DeniedKeyRow,
    HostRow,
    JobHostRow,
    JobRow,
    Store,
    StoreUnavailable,
    TokenRow,
    store_hosts,
    store_jobs,
)
from troop.store.migrate import current_revision, head_revision
from troop.store.tables import metadata

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    # A directory that does not exist yet: open() must create it.
    return f"sqlite+aiosqlite:///{tmp_path}/data/troop.db"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


def host(name: str, **kw: Any) -> HostRow:
    base: dict[str, Any] = dict(
        state="accepted",
        public_key=b"\x30\x82key-" + name.encode(),
        fingerprint="fp-" + name,
        os="linux",
        platform="debian",
        arch="x86_64",
        ip="10.0.0.1",
        version="0.1.0",
        tags=["web", "eu"],
        plugins=[{"name": "scout_manager", "version": "1.0.0"}],
        first_seen=at(0),
        last_seen=at(1),
        updated_at=at(1),
    )
    base.update(kw)
    return HostRow(hostname=name, **base)


def job(job_id: str, created: float = 0, **kw: Any) -> JobRow:
    base: dict[str, Any] = dict(
        kind="cmd",
        target={"hosts": ["web*"], "os": "linux", "tags": [], "one": False},
        args={"argv": ["uname", "-a"], "env": {"A": "1"}},
        timeout=30.0,
        created_by="admin",
        created_at=at(created),
    )
    base.update(kw)
    return JobRow(id=job_id, **base)


def job_hosts(job_id: str, names: list[str], state: str = "sent") -> list[JobHostRow]:
    return [
        JobHostRow(job_id=job_id, hostname=n, task_id=f"{job_id}/{n}", state=state, updated_at=at(0)) for n in names
    ]


def token(name: str, **kw: Any) -> TokenRow:
    base: dict[str, Any] = dict(id="tok-" + name, role="operator", token_hash="h" * 60 + name[:4].ljust(4, "0"))
    base.update(kw)
    return TokenRow(name=name, created_at=at(0), created_by="admin", **base)


# ---------------------------------------------------------------- backend-neutral tests


async def test_open_migrates_to_head(store: Store) -> None:
    assert await current_revision(store._engine) == head_revision() == "0003"
    await store.ping()


async def test_reopen_keeps_everything(store_url: str) -> None:
    s = await Store.open(store_url)
    await s.upsert_host(host("web1"))
    await s.add_denied_key("web1", b"bad", "fp-bad", at(5))
    await s.create_job(job("j1"), job_hosts("j1", ["web1"]))
    await s.add_token(token("ci"))
    await s.audit("admin", "key.accept", "web1", True, {"why": "test"})
    await s.set_state("session_key", b"\x00\x01secret")
    await s.close()

    s = await Store.open(store_url)  # migrating again is a no-op
    try:
        assert await s.get_host("web1") == host("web1")
        assert [d.fingerprint for d in await s.denied_keys()] == ["fp-bad"]
        got = await s.get_job("j1")
        assert got is not None and got[0] == job("j1")
        assert await s.token_by_hash(token("ci").token_hash) == token("ci")
        assert [a.action for a in await s.list_audit()] == ["key.accept"]
        assert await s.get_state("session_key") == b"\x00\x01secret"
    finally:
        await s.close()


async def test_host_upsert_get_and_list(store: Store) -> None:
    assert await store.get_host("web1") is None
    assert await store.all_hosts() == []
    await store.upsert_host(host("web2"))
    await store.upsert_host(host("web1", state="pending"))
    assert [h.hostname for h in await store.all_hosts()] == ["web1", "web2"]

    replaced = host("web1", state="accepted", os="windows", tags=[], plugins=[], version="")
    await store.upsert_host(replaced)
    assert await store.get_host("web1") == replaced


async def test_host_datetimes_are_aware_utc(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    await store.upsert_host(host("web1", last_seen=datetime(2025, 3, 1, 16, 0, tzinfo=plus2)))
    got = await store.get_host("web1")
    assert got is not None
    assert got.last_seen == datetime(2025, 3, 1, 14, 0, tzinfo=UTC)
    assert got.last_seen.tzinfo is UTC and got.first_seen.tzinfo is UTC


async def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        await store.upsert_host(host("web1", last_seen=datetime(2025, 1, 1)))
    assert await store.get_host("web1") is None


async def test_set_host_state(store: Store) -> None:
    assert await store.set_host_state("ghost", "accepted") is False
    await store.upsert_host(host("web1", state="pending"))
    assert await store.set_host_state("web1", "rejected") is True
    got = await store.get_host("web1")
    assert got is not None and got.state == "rejected"
    assert got.updated_at > at(1)


async def test_touch_hosts(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_hosts, "IN_CHUNK", 2)  # make the chunking run
    for n in ("a", "b", "c", "d", "e"):
        await store.upsert_host(host(n))
    await store.touch_hosts([], at(50))
    await store.touch_hosts(["a", "b", "c", "e", "missing"], at(100))
    seen = {h.hostname: h.last_seen for h in await store.all_hosts()}
    assert seen == {"a": at(100), "b": at(100), "c": at(100), "d": at(1), "e": at(100)}


async def test_delete_host_takes_its_denied_keys(store: Store) -> None:
    await store.upsert_host(host("web1"))
    await store.upsert_host(host("web2"))
    await store.add_denied_key("web1", b"k1", "fp-1", at(1))
    await store.add_denied_key("web2", b"k2", "fp-2", at(1))
    assert await store.delete_host("web1") is True
    assert await store.get_host("web1") is None
    assert [d.hostname for d in await store.denied_keys()] == ["web2"]
    assert await store.delete_host("web1") is False
    # A hostname known only through a denied key still counts as deleted.
    await store.add_denied_key("intruder", b"k3", "fp-3", at(1))
    assert await store.delete_host("intruder") is True
    assert [d.hostname for d in await store.denied_keys()] == ["web2"]


async def test_denied_key_upsert_counts_attempts(store: Store) -> None:
    await store.add_denied_key("web1", b"k1", "fp-1", at(10))
    await store.add_denied_key("web1", b"k1", "fp-1", at(20))
    await store.add_denied_key("web1", b"k1", "fp-1", at(30))
    await store.add_denied_key("web1", b"k2", "fp-2", at(40))
    rows = await store.denied_keys()
    assert [(r.fingerprint, r.attempts) for r in rows] == [("fp-1", 3), ("fp-2", 1)]
    first = rows[0]
    assert isinstance(first, DeniedKeyRow) and first.id is not None
    assert (first.first_seen, first.last_seen, first.public_key) == (at(10), at(30), b"k1")


async def test_create_and_get_job(store: Store) -> None:
    assert await store.get_job("nope") is None
    await store.create_job(job("j1"), job_hosts("j1", ["web2", "web1"]))
    await store.create_job(job("j0"), [])
    got = await store.get_job("j1")
    assert got is not None
    assert got[0] == job("j1")
    assert got[1] == sorted(job_hosts("j1", ["web2", "web1"]), key=lambda r: r.hostname)
    assert await store.get_job("j0") == (job("j0"), [])


async def test_create_job_is_atomic(store: Store) -> None:
    rows = job_hosts("j1", ["web1", "web2"])
    rows[1].task_id = rows[0].task_id  # violates the unique task id
    with pytest.raises(IntegrityError):
        await store.create_job(job("j1"), rows)
    assert await store.get_job("j1") is None


async def test_save_job_hosts_writes_every_result_column(store: Store) -> None:
    await store.create_job(job("j1"), job_hosts("j1", ["web1", "web2", "web3"]))
    done = JobHostRow(
        job_id="j1",
        hostname="web1",
        task_id="ignored",  # the task id is fixed at creation
        state="succeeded",
        exit_code=0,
        stdout=b"out\x00\xff",
        stderr=b"err",
        stdout_truncated=True,
        stderr_truncated=False,
        error=None,
        duration=1.25,
        late=True,
        data={"bytes": 7, "nested": {"a": [1, 2]}},
        updated_at=at(9),
    )
    failed = JobHostRow(job_id="j1", hostname="web2", task_id="x", state="failed", error="boom", updated_at=at(9))
    orphan = JobHostRow(job_id="pruned", hostname="web1", task_id="y", state="lost")
    await store.save_job_hosts([failed, done, orphan])
    await store.save_job_hosts([])
    got = await store.get_job("j1")
    assert got is not None
    by_host = {h.hostname: h for h in got[1]}
    done.task_id, failed.task_id = "j1/web1", "j1/web2"
    assert by_host["web1"] == done
    assert by_host["web2"] == failed
    assert by_host["web3"] == job_hosts("j1", ["web3"])[0]


async def test_finish_list_and_unfinished(store: Store) -> None:
    for i in range(5):
        names = ["a", "b", "c"][: i % 3 + 1]
        await store.create_job(job(f"j{i}", created=i), job_hosts(f"j{i}", names))
    await store.save_job_hosts([JobHostRow(job_id="j4", hostname="a", task_id="", state="succeeded", updated_at=at(9))])
    await store.finish_job("j1", at(50))
    await store.finish_job("j3", at(60))

    listed = await store.list_jobs()
    assert [j.id for j, _ in listed] == ["j4", "j3", "j2", "j1", "j0"]
    assert listed[0][1] == {"succeeded": 1, "sent": 1}
    assert listed[2][1] == {"sent": 3}
    assert listed[1][0].state == "done" and listed[1][0].finished_at == at(60)
    page = await store.list_jobs(limit=2, before=at(3))
    assert [j.id for j, _ in page] == ["j2", "j1"]
    assert await store.list_jobs(before=at(0)) == []

    unfinished = await store.unfinished_jobs()
    assert [j.id for j, _ in unfinished] == ["j0", "j2", "j4"]
    assert [h.hostname for h in unfinished[1][1]] == ["a", "b", "c"]


async def test_job_host_by_task(store: Store) -> None:
    await store.create_job(job("j1"), job_hosts("j1", ["web1", "web2"]))
    got = await store.job_host_by_task("j1/web2")
    assert got is not None and (got.job_id, got.hostname) == ("j1", "web2")
    assert await store.job_host_by_task("j1/nope") is None


async def test_prune_jobs(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_jobs, "PRUNE_BATCH", 3)  # several delete rounds
    # j0..j9 created at 0..9 s; all finished except j0 and j8.
    for i in range(10):
        await store.create_job(job(f"j{i}", created=i), job_hosts(f"j{i}", ["a", "b"]))
        if i not in (0, 8):
            await store.finish_job(f"j{i}", at(20))

    # Older than 3 s: j1, j2 go (j0 is running).
    assert await store.prune_jobs(older_than=at(3), keep_max=100) == 2
    # Beyond the newest 4 (j9, j8, j7, j6): j3, j4, j5 go; j0 and j8 run on.
    assert await store.prune_jobs(older_than=at(0), keep_max=4) == 3
    assert [j.id for j, _ in await store.list_jobs()] == ["j9", "j8", "j7", "j6", "j0"]
    assert await store.prune_jobs(older_than=at(0), keep_max=4) == 0
    assert await store.prune_jobs(older_than=at(100), keep_max=0) == 3
    assert [j.id for j, _ in await store.list_jobs()] == ["j8", "j0"]
    # The host rows went with their jobs.
    assert await store.job_host_by_task("j9/a") is None
    assert await store.job_host_by_task("j8/a") is not None
    async with store._read() as conn:
        n = await conn.scalar(sa.select(sa.func.count()).select_from(sa.table("job_hosts")))
    assert n == 4


async def test_tokens(store: Store) -> None:
    assert await store.count_tokens() == 0
    admin = token("admin", role="admin", expires_at=at(3600))
    limited = token("ci", targets=["web*", "db1"])
    await store.add_token(admin)
    await store.add_token(limited)
    assert await store.count_tokens() == 2
    assert await store.token_by_hash(limited.token_hash) == limited
    assert await store.token_by_hash("0" * 64) is None
    assert [t.name for t in await store.list_tokens()] == ["admin", "ci"]
    assert (await store.list_tokens())[0].targets is None

    with pytest.raises(IntegrityError):
        await store.add_token(token("ci", id="other-id", token_hash="z" * 64))

    await store.touch_token(admin.id, at(10))
    got = await store.token_by_hash(admin.token_hash)
    assert got is not None and got.last_used_at == at(10)

    revoked = await store.revoke_token("ci", at(20))  # by name
    assert revoked is not None and revoked.id == limited.id and revoked.revoked_at == at(20)
    assert await store.revoke_token("ci", at(21)) is None  # already revoked
    assert await store.revoke_token(limited.id, at(21)) is None
    assert await store.revoke_token("unknown", at(21)) is None
    by_id = await store.revoke_token(admin.id, at(22))
    assert by_id is not None and by_id.name == "admin"
    assert await store.count_tokens() == 2  # revoked tokens still count


async def test_audit(store: Store) -> None:
    assert await store.list_audit() == []
    await store.audit("admin", "job.create", "web*", True, {"job": "j1"})
    await store.audit("viewer", "key.accept", "web1", False)
    await store.audit_many(
        [AuditRow(actor="op", action="token.use", target="", allowed=True, ts=at(i)) for i in range(3)]
    )
    await store.audit_many([])
    rows = await store.list_audit()
    assert [r.action for r in rows] == ["key.accept", "job.create", *["token.use"] * 3]
    assert rows[0].allowed is False and rows[0].detail == {} and rows[0].id is not None
    assert rows[1].detail == {"job": "j1"}
    assert [r.ts for r in rows[2:]] == [at(2), at(1), at(0)]
    assert len(await store.list_audit(limit=2)) == 2


async def test_general_state(store: Store) -> None:
    assert await store.get_state("session_key") is None
    await store.set_state("session_key", b"one")
    await store.set_state("session_key", b"two")
    await store.set_state("rsa_private", b"\x00" * 2000)
    assert await store.get_state("session_key") == b"two"
    assert await store.get_state("rsa_private") == b"\x00" * 2000


async def test_concurrent_batch_saves(store: Store) -> None:
    """50 overlapping batches at once: each lands whole, none fails or deadlocks."""
    names = [f"h{i:03d}" for i in range(50)]
    await store.create_job(job("j1"), job_hosts("j1", names))

    async def writer(i: int) -> None:
        rows = [
            JobHostRow(
                job_id="j1",
                hostname=n,
                task_id="",
                state="running",
                data={"writer": i},
                updated_at=at(i),
            )
            for n in names
        ]
        random.shuffle(rows)
        await store.save_job_hosts(rows)

    async def reader() -> None:
        got = await store.get_job("j1")
        assert got is not None and len(got[1]) == 50

    await asyncio.gather(*(writer(i) for i in range(50)), *(reader() for _ in range(20)))
    got = await store.get_job("j1")
    assert got is not None
    writers = {h.data["writer"] for h in got[1]}
    assert len(writers) == 1  # the last batch won on every row: batches never interleave
    assert {h.state for h in got[1]} == {"running"}


async def test_concurrent_mixed_calls(store: Store) -> None:
    await store.upsert_host(host("web1"))
    calls: list[Coroutine[Any, Any, object]] = []
    for i in range(30):
        calls.append(store.touch_hosts(["web1"], at(i)))
        calls.append(store.audit("a", "x", str(i), True))
        calls.append(store.add_denied_key("web1", b"k", "fp", at(i)))
        calls.append(store.all_hosts())
    await asyncio.gather(*calls)
    assert len(await store.list_audit(limit=1000)) == 30
    assert [d.attempts for d in await store.denied_keys()] == [30]


def _compare(conn: Connection) -> list[Any]:
    def server_default_differs(
        _ctx: Any,
        _insp_col: Any,
        _meta_col: Any,
        insp: str | None,
        _meta: Any,
        rendered: str | None,
    ) -> bool:
        # Reflection spells DEFAULT '' as "''" (SQLite) or "''::text" (PostgreSQL);
        # compare the literal, not its quoting or cast.
        def norm(s: str | None) -> str | None:
            return None if s is None else s.split("::")[0].strip("()").strip("'\"")

        return norm(insp) != norm(rendered)

    ctx = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "compare_server_default": server_default_differs},
    )
    return list(compare_metadata(ctx, metadata))


async def test_migration_matches_tables(store: Store) -> None:
    async with store._engine.connect() as conn:
        diffs = await conn.run_sync(_compare)
    assert diffs == []


# ---------------------------------------------------------------- SQLite-only tests


async def test_failed_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    """SQLite DDL runs inside the migration transaction, so a failure rolls it all back."""
    path = tmp_path / "x.db"
    s = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=False)
    async with s._writer.begin() as conn:
        # A stray table that the migration will trip over half-way through.
        await conn.run_sync(lambda c: sa.Table("tokens", sa.MetaData(), sa.Column("x", sa.Integer)).create(c))
    await s.close()
    with pytest.raises(sa.exc.OperationalError, match="already exists"):
        await Store.open(f"sqlite+aiosqlite:///{path}")
    s = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=False)
    try:
        async with s._read() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert names == ["tokens"]
    finally:
        await s.close()


async def test_sqlite_pragmas(store: Store, store_url: str) -> None:
    async with store._read() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
    assert Path(store_url.removeprefix("sqlite+aiosqlite:///")).is_file()


async def test_open_without_migrate_leaves_schema_alone(tmp_path: Path) -> None:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/x.db", migrate=False)
    try:
        await s.ping()
        assert await current_revision(s._engine) is None
    finally:
        await s.close()


async def test_memory_database(tmp_path: Path) -> None:
    s = await Store.open("sqlite+aiosqlite://")
    try:
        await asyncio.gather(*(s.upsert_host(host(f"h{i}")) for i in range(20)), s.all_hosts())
        assert len(await s.all_hosts()) == 20
    finally:
        await s.close()


@pytest.mark.parametrize(
    "url",
    ["mysql+aiomysql://u@h/db", "not a url", "sqlite+nosuchdriver:///x.db"],
)
async def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        await Store.open(url)


async def test_repr_hides_password() -> None:
    s = await Store.open("postgresql+asyncpg://troop:s3cret@127.0.0.1:1/troop", migrate=False)
    try:
        assert "s3cret" not in repr(s)
    finally:
        await s.close()


async def test_ping_raises_when_database_is_down() -> None:
    s = await Store.open("postgresql+asyncpg://troop@127.0.0.1:1/troop", migrate=False)
    try:
        with pytest.raises(StoreUnavailable):
            await s.ping()
    finally:
        await s.close()


async def test_blob_references_follow_their_jobs(store: Store) -> None:
    await store.add_blob("a" * 64, 21, at(0))
    await store.add_blob("b" * 64, 30000, at(0))
    await store.create_job(job("j1"), job_hosts("j1", ["web1"]))
    await store.link_blob("j1", "a" * 64)
    await store.link_blob("j1", "a" * 64)  # twice is once
    assert await store.get_blob_size("a" * 64) == 21
    # b is not used by any job: an orphan once its grace period is over, not before.
    assert await store.orphan_blobs(at(-1)) == []
    assert await store.orphan_blobs(at(1)) == ["b" * 64]
    await store.finish_job("j1", at(2))
    await store.prune_jobs(at(10), keep_max=0)
    assert sorted(await store.orphan_blobs(at(1))) == ["a" * 64, "b" * 64]
    await store.delete_blob("a" * 64)
    assert await store.get_blob_size("a" * 64) is None


async def test_state_once_keeps_the_first_value(store: Store) -> None:
    first = await store.state_once("identity", b"first")
    second = await store.state_once("identity", b"second")
    assert first == second == b"first"
    assert await store.get_state("identity") == b"first"


async def test_generals_register_and_forget(store: Store) -> None:
    from troop.store import GeneralRow

    await store.general_beat(GeneralRow(id="g1", hostname="m1", api="a:1", started_at=at(0), seen_at=at(0)))
    await store.general_beat(GeneralRow(id="g2", hostname="m2", started_at=at(1), seen_at=at(1)))
    await store.general_beat(GeneralRow(id="g1", started_at=at(9), seen_at=at(5), online=7))  # a beat
    rows = {g.id: g for g in await store.all_generals()}
    assert rows["g1"].seen_at == at(5) and rows["g1"].online == 7
    assert rows["g1"].hostname == "m1" and rows["g1"].started_at == at(0)  # kept from registration
    assert await store.forget_generals(at(3)) == 1
    assert [g.id for g in await store.all_generals()] == ["g1"]


async def test_job_ownership_claims_have_one_winner(store: Store) -> None:
    await store.create_job(job("j1", 0, owner="dead"), [])
    await store.create_job(job("j2", 1, owner="live"), [])
    await store.create_job(job("j3", 2, owner="dead"), [])
    await store.finish_job("j3", at(3))
    assert [j.id for j in await store.orphaned_jobs(["live"])] == ["j1"]
    assert await store.job_owner("j1") == ("dead", "running")
    assert await store.job_owner("nope") is None
    results = await asyncio.gather(*(store.claim_job("j1", "dead", f"g{i}") for i in range(4)))
    assert sorted(results) == [False, False, False, True]
    owner = (await store.job_owner("j1") or ("", ""))[0]
    assert owner in {"g0", "g1", "g2", "g3"}
    assert not await store.claim_job("j3", "dead", "g9")  # finished jobs are never claimed


async def test_finish_job_saves_its_last_rows_in_the_same_transaction(store: Store) -> None:
    await store.create_job(job("j1"), job_hosts("j1", ["a", "b"]))
    row = JobHostRow(job_id="j1", hostname="b", task_id="", state="succeeded", stdout=b"hi", updated_at=at(5))
    await store.finish_job("j1", at(6), [row])
    found = await store.get_job("j1")
    assert found is not None
    assert found[0].state == "done" and found[0].finished_at == at(6)
    assert [(h.hostname, h.state, h.stdout) for h in found[1]] == [("a", "sent", b""), ("b", "succeeded", b"hi")]
    assert found[1][1].task_id == "j1/b"  # the task id is never rewritten


async def test_finish_job_as_owner_only_while_it_owns_the_job(store: Store) -> None:
    """A General that stalled and lost its job to an adopter must not also mark it done."""
    await store.create_job(job("j1", owner="g1"), job_hosts("j1", ["a"]))
    assert await store.claim_job("j1", "g1", "g2")
    row = JobHostRow(job_id="j1", hostname="a", task_id="", state="succeeded", updated_at=at(5))
    assert not await store.finish_job("j1", at(6), [row], owner="g1")
    found = await store.get_job("j1")
    assert found is not None and found[0].state == "running"
    assert found[1][0].state == "succeeded"  # its result is kept for the adopter all the same
    assert await store.finish_job("j1", at(7), owner="g2")
    assert await store.job_owner("j1") == ("g2", "done")
