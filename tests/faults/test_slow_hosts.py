"""Item 14 of peers.md (12 of the suite): slow and partitioned hosts. One job names each host that
did not answer with why: not connected (offline), never acked (a frozen scout), acked but no
result (a network partition mid-task); a result that comes after the deadline is stored and
marked late. tests/integration/test_states.py covers each state on its own; these put them
side by side in one job, add a real partition (a TCP proxy that stops forwarding), and check
what `troop job show` prints."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.faults.tcpproxy import TcpProxy
from tests.integration.conftest import run_json
from tests.security.rawscout import db_rows, wait_until
from troop.localfleet import Fleet

HOSTS = ["ok1", "off1", "stop1", "part1"]


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Fleet, TcpProxy]]:
    config = tmp_path / "general.toml"
    config.write_text("grace = 1.0\nkey_bits = 2048\n")
    fleet = Fleet(tmp_path / "fleet", env={"TROOP_RECONNECT_MAX": "2"})
    proxy = TcpProxy(fleet.scout_port)
    try:
        fleet.start_general("--config", str(config))
        for name in HOSTS[:3]:
            fleet.start_scout(name)
        fleet.start_scout("part1", extra=("--general", f"127.0.0.1:{proxy.port}"))
        fleet.wait_online(HOSTS)
        yield fleet, proxy
    finally:
        proxy.resume()
        for proc in fleet.scouts.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        fleet.stop()
        proxy.close()


def host_state(fleet: Fleet, job_id: str, host: str) -> dict:  # type: ignore[type-arg]
    return fleet.api("GET", f"/api/v1/jobs/{job_id}")["hosts"][host]  # type: ignore[no-any-return]


def test_offline_no_ack_and_timed_out_are_told_apart_and_late_results_kept(slow: tuple[Fleet, TcpProxy]) -> None:
    fleet, proxy = slow
    fleet.stop_scout("off1")
    wait_until(lambda: not {h["hostname"]: h for h in fleet.api("GET", "/api/v1/hosts")["hosts"]}["off1"]["online"],
               10, "off1 to be offline")
    stopped = fleet.scouts["stop1"]
    os.kill(stopped.pid, signal.SIGSTOP)
    job_id = fleet.cli("cmd", "*", "--async", "--timeout", "2", "--shell", "--", "sleep 1; echo done").stdout.strip()
    wait_until(lambda: host_state(fleet, job_id, "part1")["state"] == "running", 10, "part1 to start the task")
    proxy.pause()  # the partition: both ways, connections left open
    _, job = run_json(fleet, "job", "show", job_id, "--wait")
    hosts = job["hosts"]
    assert hosts["ok1"]["state"] == "succeeded" and hosts["ok1"]["stdout"] == "done\n"
    assert hosts["off1"]["state"] == "offline" and "not connected" in hosts["off1"]["error"]
    assert hosts["stop1"]["state"] == "sent" and "no ack" in hosts["stop1"]["error"]
    assert hosts["part1"]["state"] == "timed_out" and "no result within 3s" in hosts["part1"]["error"]
    took = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    assert took.total_seconds() < 2 + 1.0 + 2  # the General named them at timeout + grace, not later
    human = fleet.cli("job", "show", job_id)
    for word in ("offline", "no ack", "no result within"):
        assert word in human.stdout + human.stderr, (word, human.stdout)

    proxy.resume()  # the partition heals: the result that waited in it arrives, late
    late = wait_until(lambda: (h := host_state(fleet, job_id, "part1"))["late"] and h, 10, "part1's late result")
    assert late["state"] == "succeeded" and late["stdout"] == "done\n"
    os.kill(stopped.pid, signal.SIGCONT)  # the frozen scout wakes: the task was cancelled meanwhile
    woke = wait_until(lambda: (h := host_state(fleet, job_id, "stop1"))["late"] and h, 10, "stop1's late answer")
    assert woke["state"] == "failed" and "cancelled" in woke["error"] and woke["stdout"] == ""
    assert "(late)" in fleet.cli("job", "show", job_id).stdout
    stored = dict(db_rows(fleet, "SELECT hostname, late FROM job_hosts WHERE job_id = ?", job_id))
    assert stored == {"ok1": 0, "off1": 0, "stop1": 1, "part1": 1}

