"""Core figures of issue 2: CLI wall time, API latency and idle memory with 15 local scouts.

    .venv/bin/python bench/core.py [--scouts 15] [--runs 7]

Prints a Markdown table and writes bench/results/core-DATE.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from troop.localfleet import Fleet


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def timed(fn: Any, runs: int) -> dict[str, float]:
    fn()  # warm-up, not counted
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": runs}


def cli_ok(fleet: Fleet, n: int, *args: str) -> Any:
    def run() -> None:
        result = fleet.cli(*args)
        if result.returncode != 0 or result.stdout.count("succeeded") != n:
            raise RuntimeError(f"troop {args} failed: {result.stdout[-500:]} {result.stderr[-500:]}")

    return run


def api_ok(fleet: Fleet, n: int, body: dict[str, Any]) -> Any:
    def run() -> None:
        job = fleet.api("POST", "/api/v1/jobs?wait=30", body)
        ok = sum(h["state"] == "succeeded" for h in job["hosts"].values())
        if ok != n:
            raise RuntimeError(f"only {ok}/{n} succeeded")

    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scouts", type=int, default=15)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    n = args.scouts
    with tempfile.TemporaryDirectory(prefix="troop-bench-") as tmp:
        fleet = Fleet(Path(tmp))
        try:
            fleet.start_general()
            names = [f"host{i:02d}" for i in range(n)]
            for name in names:
                fleet.start_scout(name, "bench")
            fleet.wait_online(names, timeout=60)
            time.sleep(2)
            assert fleet.general is not None
            results: dict[str, Any] = {
                "cli_ping": timed(cli_ok(fleet, n, "ping", "*"), args.runs),
                "cli_cmd": timed(cli_ok(fleet, n, "cmd", "*", "--", "uname", "-a"), args.runs),
                "api_ping": timed(api_ok(fleet, n, {"kind": "ping", "target": {"hosts": "*"}}), args.runs),
                "api_cmd": timed(
                    api_ok(fleet, n, {"kind": "cmd", "target": {"hosts": "*"}, "command": {"argv": ["uname", "-a"]}}),
                    args.runs,
                ),
            }
            time.sleep(2)
            scout_rss = sorted(rss_mb(p.pid) for p in fleet.scouts.values())
            results["rss_mb"] = {
                "scout_median": statistics.median(scout_rss),
                "scout_max": max(scout_rss),
                "general_with_scouts": rss_mb(fleet.general.pid),
            }
        finally:
            fleet.stop()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": _nproc(), "python": platform.python_version(), "platform": platform.platform()},
        "scouts": n,
        "results": results,
        "command": f"python bench/core.py --scouts {n} --runs {args.runs}",
    }
    out = Path(__file__).parent / "results" / f"core-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nwritten to {out}")
    return 0


def render(report: dict[str, Any]) -> str:
    r = report["results"]
    lines = [f"| figure ({report['scouts']} scouts) | median | min | max |", "|---|---|---|---|"]
    for key, label in (
        ("cli_ping", "`troop ping '*'` wall"),
        ("cli_cmd", "`troop cmd '*' -- uname -a` wall"),
        ("api_ping", "API ping, submit to last result"),
        ("api_cmd", "API uname -a, submit to last result"),
    ):
        v = r[key]
        lines.append(f"| {label} | {v['median'] * 1000:.0f} ms | {v['min'] * 1000:.0f} ms | {v['max'] * 1000:.0f} ms |")
    m = r["rss_mb"]
    lines.append(f"| idle RSS of a scout (median / max) | {m['scout_median']:.1f} MB | | {m['scout_max']:.1f} MB |")
    lines.append(f"| RSS of the General with {report['scouts']} scouts | {m['general_with_scouts']:.1f} MB | | |")
    return "\n".join(lines)


def _nproc() -> int:
    return int(subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip() or 0)


if __name__ == "__main__":
    sys.exit(main())
