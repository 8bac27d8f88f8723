"""Soak: 1,000 scouts (a swarm) plus one real troop-scout, a ping job a second, for 10 minutes;
the RSS and open file descriptors of the General and of the real scout are sampled every 30 s
and must stay flat.

    .venv/bin/python bench/soak.py [--scouts 1000] [--minutes 10]      (make soak)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, rss_mb
from swarm import running_swarm


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soak(scouts: int, minutes: float) -> dict[str, Any]:
    with running_swarm(scouts) as (bench, procs, root, _grown):
        real = procs.start(
            "troop-scout (soak)",
            [
                str(Path(sys.executable).with_name("troop-scout")),
                "--general",
                f"127.0.0.1:{bench.scout_port}",
                "--hostname",
                "soak-real",
                "--data-dir",
                str(root / "real"),
            ],
            log_path=root / "real.log",
        )
        time.sleep(5)
        assert bench.general is not None
        samples, jobs, failed = [], 0, 0
        end, next_sample = time.monotonic() + minutes * 60, 0.0
        while time.monotonic() < end:
            _, ok, total, _ = bench.ping()
            jobs += 1
            failed += total - ok
            if time.monotonic() >= next_sample:
                samples.append(
                    {
                        "t": round(minutes * 60 - (end - time.monotonic())),
                        "general_rss_mb": rss_mb(bench.general.pid),
                        "general_fds": fds(bench.general.pid),
                        "scout_rss_mb": rss_mb(real.pid),
                        "scout_fds": fds(real.pid),
                    }
                )
                next_sample = time.monotonic() + 30
            time.sleep(1)
        return {"scouts": scouts + 1, "minutes": minutes, "jobs": jobs, "host_failures": failed, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scouts", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    result = soak(args.scouts, args.minutes)
    first, last = result["samples"][1], result["samples"][-1]  # the first sample is still warming up
    result["growth"] = {k: round(last[k] - first[k], 1) for k in first if k != "t"}
    out = RESULTS / f"soak-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print(f"written to {out}")
    return 0 if result["host_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
