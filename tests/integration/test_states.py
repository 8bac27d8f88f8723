"""Hosts that do not answer are named with why: offline, no ack, timed out, lost; late results kept."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import run_json
from troop.localfleet import Fleet


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Fleet]:
    """A General with a one-second grace, and scouts s1..s3."""
    config = tmp_path / "general.toml"
    config.write_text("grace = 1.0\n")
    f = Fleet(tmp_path / "fleet", env={"TROOP_RECONNECT_MAX": "2"})
    try:
        f.start_general("--config", str(config))
        for name in ("s1", "s2", "s3"):
            f.start_scout(name, "grp")
        f.wait_online(["s1", "s2", "s3"])
        yield f
    finally:
        for proc in f.scouts.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        f.stop()


def test_offline_host_is_named_and_others_succeed(quick: Fleet) -> None:
    quick.stop_scout("s3")
    time.sleep(0.5)
    code, job = run_json(quick, "ping", "*")
    assert code == 1
    assert job["hosts"]["s3"]["state"] == "offline"
    assert job["hosts"]["s1"]["state"] == job["hosts"]["s2"]["state"] == "succeeded"
    human = quick.cli("ping", "*")
    assert "offline" in human.stdout + human.stderr


def test_one_never_picks_an_offline_host(quick: Fleet) -> None:
    quick.stop_scout("s2")
    quick.stop_scout("s3")
    time.sleep(0.5)
    for _ in range(10):
        code, job = run_json(quick, "ping", "*", "--tag", "grp", "--one")
        assert code == 0 and list(job["hosts"]) == ["s1"]
    quick.stop_scout("s1")
    time.sleep(0.5)
    result = quick.cli("ping", "*", "--one")
    assert result.returncode == 2 and "online" in result.stderr


def test_stopped_scout_is_no_ack_and_never_runs_the_task_later(quick: Fleet) -> None:
    s2 = quick.scouts["s2"]
    os.kill(s2.pid, signal.SIGSTOP)
    try:
        code, job = run_json(quick, "cmd", "s1,s2", "--timeout", "1", "--", "echo", "hi")
    finally:
        os.kill(s2.pid, signal.SIGCONT)
    assert code == 1
    assert job["hosts"]["s1"]["state"] == "succeeded"
    assert job["hosts"]["s2"]["state"] == "sent" and "no ack" in job["hosts"]["s2"]["error"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, again = run_json(quick, "job", "show", job["job"])
        if again["hosts"]["s2"]["late"]:
            break
        time.sleep(0.2)
    # The job ended before the scout woke up: the General cancelled the task, so it never
    # ran; the scout's late answer says so and is kept, marked late.
    late = again["hosts"]["s2"]
    assert late["late"] is True and late["state"] == "failed" and "cancelled" in late["error"]
    assert late["stdout"] == ""


def test_running_task_past_the_deadline_is_timed_out(quick: Fleet) -> None:
    s1 = quick.scouts["s1"]
    job_id = quick.cli("cmd", "s1", "--async", "--timeout", "1", "--", "sleep", "0.5").stdout.strip()
    time.sleep(0.2)
    os.kill(s1.pid, signal.SIGSTOP)  # acked, running, then silent
    try:
        _, job = run_json(quick, "job", "show", job_id, "--wait")
    finally:
        os.kill(s1.pid, signal.SIGCONT)
    host = job["hosts"]["s1"]
    assert host["state"] in ("timed_out", "succeeded")  # succeeded only if it beat the freeze
    if host["state"] == "timed_out":
        assert "no result" in host["error"]


def test_scout_killed_mid_task_is_lost_and_does_not_rerun(quick: Fleet, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    job_id = quick.cli("cmd", "s3", "--async", "--shell", "--", f"echo run >> {marker}; sleep 5").stdout.strip()
    time.sleep(0.5)
    quick.stop_scout("s3", signal.SIGKILL)
    _, job = run_json(quick, "job", "show", job_id, "--wait")
    assert job["hosts"]["s3"]["state"] == "lost"
    quick.start_scout("s3", "grp")
    quick.wait_online(["s3"])
    time.sleep(1)
    assert marker.read_text().count("run") == 1


def test_scout_blacklist_refuses_on_the_scout(tmp_path: Path) -> None:
    blacklist = tmp_path / "scout-blacklist"
    blacklist.write_text("# local rules\nuseradd\n")
    f = Fleet(tmp_path / "fleet")
    try:
        f.start_general()
        f.start_scout("b1", env={"TROOP_BLACKLIST_FILE": str(blacklist)})
        f.start_scout("b2")
        f.wait_online(["b1", "b2"])
        _code, job = run_json(f, "cmd", "b1,b2", "--", "useradd", "--help")
        assert job["hosts"]["b1"]["state"] == "refused" and "scout" in job["hosts"]["b1"]["error"]
        assert job["hosts"]["b2"]["state"] != "refused"
    finally:
        f.stop()


def test_old_jobs_are_pruned_by_retention(tmp_path: Path) -> None:
    config = tmp_path / "general.toml"
    config.write_text("retention_jobs = 2\n")
    f = Fleet(tmp_path / "fleet")
    try:
        f.start_general("--config", str(config))
        f.start_scout("p1")
        f.wait_online(["p1"])
        # The scout's first connection brings a plugin.update job (scout_manager); let it land
        # first, so the four pings are the newest jobs.
        deadline = time.monotonic() + 30
        while not any(
            j["kind"] == "plugin.update" and j["state"] == "done" for j in run_json(f, "job", "list")[1]["jobs"]
        ):
            assert time.monotonic() < deadline, "no plugin.update job for the new scout"
            time.sleep(0.1)
        ids = [run_json(f, "ping", "p1")[1]["job"] for _ in range(4)]
        f.stop_general()
        f.start_general("--config", str(config))  # the pruner runs at start, then hourly
        time.sleep(0.5)
        _, listing = run_json(f, "job", "list")
        kept = [j["job"] for j in listing["jobs"]]
        assert kept == ids[:1:-1] or set(kept) == set(ids[2:]), kept
    finally:
        f.stop()
