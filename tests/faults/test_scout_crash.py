"""Item 10, a scout killed mid-task: the host is `lost` (well within timeout + grace), the scout
does not run the task again when it comes back, and no child is left behind when the scout is
stopped with SIGTERM. A SIGKILL cannot be handled by the scout itself: the command's process
group survives it, and the service manager cleans up (deploy/troop-scout.service has
KillMode=mixed: SIGTERM to the scout, then SIGKILL to every process left in its cgroup)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import run_json
from tests.security.rawscout import wait_until
from troop.localfleet import Fleet

TIMEOUT, GRACE = 30, 1.0


@pytest.fixture(scope="module")
def crash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("crash")
    config = root / "general.toml"
    config.write_text(f"grace = {GRACE}\nkey_bits = 2048\n")
    fleet = Fleet(root / "fleet", env={"TROOP_RECONNECT_MAX": "1"})
    try:
        fleet.start_general("--config", str(config))
        fleet.start_scout("c1")
        fleet.start_scout("c2")
        fleet.wait_online(["c1", "c2"])
        yield fleet
    finally:
        fleet.stop()


def task_group(tag: str) -> list[int]:
    """The processes of the task whose shell command line holds `tag` (our own, not anyone else's)."""
    shells = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True, check=False).stdout.split()
    groups = set()
    for pid in shells:
        try:
            groups.add(os.getpgid(int(pid)))
        except ProcessLookupError:
            pass
    members: list[int] = []
    for group in groups:
        found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True, check=False).stdout
        members += [int(p) for p in found.split()]
    return members


def sleeps(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep":
                out.append(pid)
        except OSError:
            pass
    return out


def test_sigkill_mid_task_is_lost_in_time_and_never_rerun(crash: Fleet, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    job_id = crash.cli(
        "cmd", "c1", "--async", "--timeout", str(TIMEOUT), "--shell", "--",
        f"echo run >> {marker}; sleep 30; echo finished >> {marker}",
    ).stdout.strip()
    wait_until(lambda: sleeps(task_group(str(marker))), 10, "the task to start")
    killed = time.monotonic()
    crash.stop_scout("c1", signal.SIGKILL)
    _, job = run_json(crash, "job", "show", job_id, "--wait")
    assert job["hosts"]["c1"]["state"] == "lost" and "lost" in job["hosts"]["c1"]["error"]
    assert time.monotonic() - killed < TIMEOUT + GRACE

    # The scout could not take its command down with it: the command's own process group lives on.
    orphans = task_group(str(marker))
    assert sleeps(orphans), "expected the command to outlive a SIGKILLed scout (see KillMode=mixed)"
    unit = (Path(__file__).parents[2] / "deploy" / "troop-scout.service").read_text()
    assert "\nKillMode=mixed\n" in unit
    for group in {os.getpgid(pid) for pid in orphans}:  # what systemd would do to the unit's cgroup
        os.killpg(group, signal.SIGKILL)

    crash.start_scout("c1")
    crash.wait_online(["c1"])
    time.sleep(1.0)
    assert marker.read_text() == "run\n"  # started once, never again, never finished
    assert crash.api("GET", f"/api/v1/jobs/{job_id}")["hosts"]["c1"]["state"] == "lost"


def test_sigterm_kills_the_running_tasks_whole_process_group(crash: Fleet, tmp_path: Path) -> None:
    tag = str(tmp_path / "sigterm-task")
    job_id = crash.cli(
        "cmd", "c2", "--async", "--timeout", str(TIMEOUT), "--shell", "--",
        f"sleep 30 & sleep 30 & sleep 30; wait # {tag}",
    ).stdout.strip()
    wait_until(lambda: len(sleeps(task_group(tag))) == 3, 10, "the task's three sleeps")
    group = task_group(tag)
    crash.stop_scout("c2", signal.SIGTERM)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in group), 5,
               "the task's processes to be gone with the scout")
    _, job = run_json(crash, "job", "show", job_id, "--wait")
    assert job["hosts"]["c2"]["state"] == "lost"
    crash.start_scout("c2")
    crash.wait_online(["c2"])
