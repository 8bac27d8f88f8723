"""ping and cmd through the real CLI, General and scouts: every way to target, every per-host field."""

from __future__ import annotations

import os
import time

from tests.integration.conftest import run_json
from troop.localfleet import Fleet


def test_ping_all_hosts_succeed(fleet: Fleet) -> None:
    code, job = run_json(fleet, "ping", "*")
    assert code == 0
    assert set(job["hosts"]) == {"web1", "web2", "db1"}
    assert all(h["state"] == "succeeded" for h in job["hosts"].values())


def test_cmd_reports_exit_code_output_and_duration(fleet: Fleet) -> None:
    code, job = run_json(fleet, "cmd", "web1", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    host = job["hosts"]["web1"]
    assert code == 1
    assert host["state"] == "failed" and host["exit_code"] == 3
    assert host["stdout"] == "out\n" and host["stderr"] == "err\n"
    assert host["duration"] is not None and host["duration"] >= 0


def test_cmd_env_dir_and_shell(fleet: Fleet, tmp_path: object) -> None:
    code, job = run_json(
        fleet,
        "cmd",
        "db1",
        "--env",
        "A=1",
        "--env",
        "B=two words",
        "--dir",
        "/tmp",
        "--shell",
        "--",
        'echo "$A|$B|$(pwd)"',
    )
    assert code == 0
    assert job["hosts"]["db1"]["stdout"] == "1|two words|/tmp\n"


def test_targets_combine(fleet: Fleet) -> None:
    def hosts(*args: str) -> set[str]:
        code, job = run_json(fleet, "ping", *args)
        assert code == 0, job
        return set(job["hosts"])

    assert hosts("web1,db1") == {"web1", "db1"}
    assert hosts("web*") == {"web1", "web2"}
    assert hosts("*", "--tag", "web") == {"web1", "web2"}
    assert hosts("*", "--tag", "web", "--tag", "blue") == {"web2"}
    assert hosts("*", "--os", "linux") == {"web1", "web2", "db1"}
    assert hosts("--tag", "db", "*") == {"db1"}  # options may come before the target
    picked = hosts("*", "--tag", "web", "--one")
    assert len(picked) == 1 and picked <= {"web1", "web2"}


def test_target_matching_nothing_is_an_error(fleet: Fleet) -> None:
    for args in (("nosuch*",), ("*", "--os", "windows"), ("*", "--tag", "web", "--tag", "db"), ("web1,ghost",)):
        result = fleet.cli("ping", *args)
        assert result.returncode == 2, args
        assert "match" in result.stderr or "unknown" in result.stderr, result.stderr


def test_timeout_kills_the_whole_process_group(fleet: Fleet, tmp_path: object) -> None:
    marker = f"/tmp/troop-orphan-{os.getpid()}-{time.time_ns()}"
    start = time.monotonic()
    code, job = run_json(
        fleet, "cmd", "web1", "--timeout", "1", "--shell", "--", f"(sleep 3; touch {marker}) & sleep 30"
    )
    assert time.monotonic() - start < 10
    host = job["hosts"]["web1"]
    assert code == 1 and host["state"] == "timed_out"
    time.sleep(3)
    assert not os.path.exists(marker), "a child of the timed-out command survived the kill"


def test_output_over_the_cap_is_truncated_and_flagged(fleet: Fleet) -> None:
    code, job = run_json(
        fleet, "cmd", "web2", "--max-output", "1000", "--shell", "--", "head -c 100000 /dev/zero | tr '\\0' x"
    )
    host = job["hosts"]["web2"]
    assert code == 0
    assert len(host["stdout"]) == 1000 and host["stdout_truncated"] is True


def test_default_output_cap_is_one_mib(fleet: Fleet) -> None:
    _code, job = run_json(fleet, "cmd", "web2", "--shell", "--", "head -c 3000000 /dev/zero | tr '\\0' y")
    assert len(job["hosts"]["web2"]["stdout"]) == 1024 * 1024
    assert job["hosts"]["web2"]["stdout_truncated"] is True


def test_scout_runs_several_tasks_at_once(fleet: Fleet) -> None:
    start = time.monotonic()
    results = [fleet.cli("cmd", "db1", "--async", "--", "sleep", "2") for _ in range(4)]
    ids = [r.stdout.strip() for r in results]
    for job_id in ids:
        _code, job = run_json(fleet, "job", "show", job_id, "--wait")
        assert job["hosts"]["db1"]["state"] == "succeeded"
    assert time.monotonic() - start < 6, "four 2 s tasks should overlap on one scout"


def test_blacklist_refuses_on_the_general(fleet: Fleet) -> None:
    code, job = run_json(fleet, "cmd", "web1", "--", "/sbin/reboot")
    host = job["hosts"]["web1"]
    assert code == 1 and host["state"] == "refused"
    assert "blacklist" in host["error"]


def test_async_then_job_show_and_list(fleet: Fleet) -> None:
    result = fleet.cli("cmd", "web1", "--async", "--", "echo", "later")
    assert result.returncode == 0
    job_id = result.stdout.strip()
    _code, job = run_json(fleet, "job", "show", job_id, "--wait")
    assert job["hosts"]["web1"]["stdout"] == "later\n"
    _code, listing = run_json(fleet, "job", "list")
    assert job_id in [j["job"] for j in listing["jobs"]]


def test_human_output_names_each_host(fleet: Fleet) -> None:
    result = fleet.cli("cmd", "web*", "--", "echo", "hello")
    assert result.returncode == 0
    assert "web1" in result.stdout and "web2" in result.stdout and "hello" in result.stdout
    assert "succeeded" in result.stdout + result.stderr


def test_stream_prints_lines_live_prefixed_by_host(fleet: Fleet) -> None:
    result = fleet.cli("cmd", "web1", "--stream", "--shell", "--", "echo one; sleep 0.3; echo two")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if "|" in line]
    assert any("web1" in line and "one" in line for line in lines), result.stdout
