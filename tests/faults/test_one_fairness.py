"""Item 16, `--one` fairness through the real API: 200 jobs with target.one over four scouts, one
of them stopped. The pick is about uniform over the three online hosts and never the offline one.
The 1,000-run version over resolve() itself is
tests/unit/test_targeting.py::test_one_is_about_uniform_and_never_offline."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.security.rawscout import wait_until
from troop.localfleet import Fleet

RUNS = 200
# Chi-square, 2 degrees of freedom: P(X > 13.82) = 0.001. A fair pick fails this once in a thousand runs.
CHI2_LIMIT = 13.82


def test_one_is_about_uniform_and_never_offline(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "fleet", env={"TROOP_KEY_BITS": "2048"})
    try:
        fleet.start_general()
        names = ["o1", "o2", "o3", "o4"]
        for name in names:
            fleet.start_scout(name, "pool")
        fleet.wait_online(names)
        fleet.stop_scout("o4")
        wait_until(lambda: not {h["hostname"]: h for h in fleet.api("GET", "/api/v1/hosts")["hosts"]}["o4"]["online"],
                   10, "o4 to be offline")
        picks: Counter[str] = Counter()
        for _ in range(RUNS):
            job = fleet.api("POST", "/api/v1/jobs?wait=10",
                            {"kind": "ping", "target": {"hosts": "*", "tags": ["pool"], "one": True}, "timeout": 5})
            (host,) = job["hosts"]
            assert job["hosts"][host]["state"] == "succeeded", job
            picks[host] += 1
        assert "o4" not in picks and sum(picks.values()) == RUNS
        expected = RUNS / 3
        chi2 = sum((picks[n] - expected) ** 2 / expected for n in names[:3])
        assert chi2 < CHI2_LIMIT, picks
    finally:
        fleet.stop()
