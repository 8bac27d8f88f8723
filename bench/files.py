"""File figures of issue 3: push and read with 15 local scouts, and memory on a 100 MB push.

    .venv/bin/python bench/files.py [--scouts 15] [--runs 7] [--big-mb 100]

All scouts share this machine's filesystem, so every push uses --force: each host downloads
and writes the file every time, as a host that did not have it would (without --force the
hosts after the first would find the file already there and report `unchanged`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from troop.localfleet import Fleet

sys.path.insert(0, str(Path(__file__).parent))
from core import rss_mb, timed


def ok_run(fleet: Fleet, n: int, *args: str) -> Any:
    def run() -> None:
        result = fleet.cli(*args, "--json")
        job = json.loads(result.stdout or "{}")
        good = sum(h["state"] == "succeeded" for h in job.get("hosts", {}).values())
        if good != n:
            raise RuntimeError(f"troop {args}: {good}/{n} succeeded: {result.stdout[-400:]} {result.stderr[-400:]}")

    return run


class PeakRss:
    """Samples a process's RSS every 20 ms while a block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.base = rss_mb(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scouts", type=int, default=15)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--big-mb", type=int, default=100)
    args = parser.parse_args()
    n = args.scouts
    with tempfile.TemporaryDirectory(prefix="troop-bench-files-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        small, mid, big = work / "small.txt", work / "30k.bin", work / "big.bin"
        small.write_bytes(b"hello from troop 123\n")  # 21 bytes, as in the seed's table
        mid.write_bytes(os.urandom(30 * 1024))
        fleet = Fleet(Path(tmp) / "fleet")
        try:
            fleet.start_general()
            names = [f"host{i:02d}" for i in range(n)]
            for name in names:
                fleet.start_scout(name)
            fleet.wait_online(names, timeout=60)
            time.sleep(2)
            results: dict[str, Any] = {
                "push_small": timed(
                    ok_run(fleet, n, "file", "push", "*", str(small), str(work / "out-small"), "--force"), args.runs
                ),
                "push_30k": timed(
                    ok_run(fleet, n, "file", "push", "*", str(mid), str(work / "out-30k"), "--force"), args.runs
                ),
                "read": timed(ok_run(fleet, n, "file", "read", "*", str(small)), args.runs),
            }
            with big.open("wb") as fh:
                for _ in range(args.big_mb):
                    fh.write(os.urandom(1024 * 1024))
            assert fleet.general is not None
            time.sleep(1)
            with PeakRss(fleet.general.pid) as peak:
                start = time.perf_counter()
                ok_run(fleet, n, "file", "push", "*", str(big), str(work / "out-big"), "--force", "--timeout", "600")()
                took = time.perf_counter() - start
            results["push_big"] = {
                "mb": args.big_mb,
                "seconds": took,
                "general_rss_before_mb": peak.base,
                "general_rss_peak_mb": peak.peak,
                "growth_mb": peak.peak - peak.base,
            }
        finally:
            fleet.stop()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "scouts": n,
        "results": results,
        "command": f"python bench/files.py --scouts {n} --runs {args.runs} --big-mb {args.big_mb}",
    }
    out = Path(__file__).parent / "results" / f"files-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for key in ("push_small", "push_30k", "read"):
        v = results[key]
        print(f"| {key} | {v['median'] * 1000:.0f} ms | {v['min'] * 1000:.0f} ms | {v['max'] * 1000:.0f} ms |")
    b = results["push_big"]
    print(
        f"| push {b['mb']} MB to {n} hosts | {b['seconds']:.1f} s | General RSS +{b['growth_mb']:.1f} MB "
        f"({b['general_rss_before_mb']:.0f} -> {b['general_rss_peak_mb']:.0f}) |"
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
