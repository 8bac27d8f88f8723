"""General restart mid-task with 45 hosts running a 5 s script: every result is stored, and the
fleet's reconnection stays under the configured handshake rate."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from tests.integration.conftest import run_json
from troop.localfleet import Fleet

HOSTS = [f"h{i:02d}" for i in range(45)]
RATE = 15  # handshakes per second allowed by the General in this test


def online_times(log: str, since: str) -> list[datetime]:
    times = []
    for line in log.splitlines():
        if " scout online " in line and line[:23] >= since:
            times.append(datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f"))
    return times


def test_restart_mid_task_keeps_every_result_and_paces_handshakes(tmp_path: Path) -> None:
    config = tmp_path / "general.toml"
    config.write_text(f"max_handshake_rate = {RATE}\ngrace = 2.0\n")
    fleet = Fleet(tmp_path / "fleet", env={"TROOP_RECONNECT_MIN": "0.2", "TROOP_RECONNECT_MAX": "2"})
    try:
        fleet.start_general("--config", str(config))
        for name in HOSTS:
            fleet.start_scout(name)
        fleet.wait_online(HOSTS, timeout=120)
        job_id = fleet.cli(
            "cmd", "*", "--async", "--timeout", "30", "--shell", "--", "sleep 5; echo done-$(hostname)"
        ).stdout.strip()
        time.sleep(1.0)
        fleet.stop_general()
        restarted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        fleet.start_general("--config", str(config))
        fleet.wait_online(HOSTS, timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, job = run_json(fleet, "job", "show", job_id)
            if all(h["state"] == "succeeded" for h in job["hosts"].values()):
                break
            time.sleep(0.5)
        states = Counter(h["state"] for h in job["hosts"].values())
        assert states == {"succeeded": 45}, states  # buffered on the scouts, stored after reconnect
        assert all(h["late"] for h in job["hosts"].values())  # the restart closed the job first
        log = (fleet.root / "general.log").read_text()
        times = online_times(log, restarted)
        assert len(times) >= 45
        per_second = Counter(t.replace(microsecond=0) for t in times)
        assert max(per_second.values()) <= RATE + 1, per_second
        assert not re.search(r"\berror\b", log.split(restarted, 1)[-1]), "errors in the General's log"
    finally:
        fleet.stop()
