"""A PostgreSQL outage under a cluster: every General answers 503 with a clear message, not a
hang; when the database returns everything works again through every General, with no
restart, and no General takes the others for dead and steals their jobs (their beats in the
store stopped too)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, wait_for
from tests.missing import no_server
from tests.natsserver import nats_for_a_test
from tests.services import start_postgres

pytestmark = pytest.mark.timeout(180)

NAMES = [f"p{i}" for i in range(1, 7)]


def ping_all(c: Cluster, i: int) -> dict[str, str]:
    status, job = c.call(i, "POST", "/api/v1/jobs?wait=20", {"kind": "ping", "target": {"hosts": "*"}}, timeout=30)
    if status != 201:
        return {"status": str(status)}
    return {name: h["state"] for name, h in job["hosts"].items()}


def test_postgres_outage_then_recovery(tmp_path: Path) -> None:
    try:
        pg = start_postgres(durable=True)  # it is killed: commits must survive, as on a real server
    except RuntimeError as exc:
        no_server(str(exc))
    nats = nats_for_a_test()
    try:
        with Cluster(tmp_path / "cluster", pg.url, next(nats)) as c:
            c.start(2, NAMES)
            c.wait_online(NAMES, via=0)
            c.wait_online(NAMES, via=1)
            assert set(ping_all(c, 0).values()) == {"succeeded"}
            # A long job owned by A is running across the outage: nobody may adopt it.
            status, long_job = c.call(
                0,
                "POST",
                "/api/v1/jobs",
                {"kind": "cmd", "target": {"hosts": "*"}, "command": {"shell": "sleep 25; echo kept"}, "timeout": 60},
            )
            assert status == 201, long_job

            pg.kill()
            for i in (0, 1):
                start = time.monotonic()
                status, body = c.call(i, "GET", "/api/v1/jobs", timeout=30)
                assert time.monotonic() - start < 10, "the API hung on a dead store"
                assert status == 503 and "unavailable" in str(body), body
            time.sleep(12)  # longer than DEAD_AFTER: every beat in the store is now stale
            pg.restart()

            wait_for(
                lambda: all(set(ping_all(c, i).values()) == {"succeeded"} for i in (0, 1)),
                40,
                "pings through both Generals after the outage",
            )
            assert all(g.proc is not None and g.proc.poll() is None for g in c.generals)
            job = c.api(1, "GET", f"/api/v1/jobs/{long_job['job']}?wait=40", timeout=60)
            assert job["state"] == "done" and {h["state"] for h in job["hosts"].values()} == {"succeeded"}, job
            assert {h["stdout"] for h in job["hosts"].values()} == {"kept\n"}
            gens = c.api(0, "GET", "/api/v1/generals")["generals"]
            assert [g["alive"] for g in gens] == [True, True], gens
            log_a = (
                (c.root / "general-0.log").read_text(errors="replace") if (c.root / "general-0.log").exists() else ""
            )
            log_b = (
                (c.root / "general-1.log").read_text(errors="replace") if (c.root / "general-1.log").exists() else ""
            )
            assert "adopted a job" not in log_a + log_b
    finally:
        nats.close()
        pg.stop()
