"""Rotation storm: rotate the General's session key again and again with 1,000 scouts
connected and ping jobs in flight. Every scout must be re-keyed in place (no task fails, no
scout drops or re-handshakes) and the General's CPU stays bounded.

    .venv/bin/python bench/storm.py [--scouts 1000] [--rotations 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm import running_swarm


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def storm(scouts: int = 1000, rotations: int = 5) -> dict[str, Any]:
    with running_swarm(scouts) as (bench, _procs, root, grown):
        assert bench.general is not None
        pings: list[tuple[float, int, int, str]] = []
        pinger = threading.Thread(target=lambda: pings.extend(bench.ping() for _ in range(rotations)))
        cpu_before, started = cpu_seconds(bench.general.pid), time.monotonic()
        pinger.start()
        key_ids = []
        for _ in range(rotations):
            key_ids.append(bench.api("POST", "/api/v1/keys/rotate")["key_id"])
            time.sleep(0.1)
        pinger.join()
        after = bench.ping()
        took, cpu = time.monotonic() - started, cpu_seconds(bench.general.pid) - cpu_before
        log = (root / "general.log").read_text(errors="replace")
        return {
            "scouts": scouts,
            "rotations": rotations,
            "key_ids": key_ids,
            "connect": grown,
            "pings_during": [{"seconds": round(s, 3), "ok": ok, "total": total} for s, ok, total, _ in pings],
            "ping_after": {"seconds": round(after[0], 3), "ok": after[1], "total": after[2]},
            "online_after": bench.online(),
            "general_cpu_seconds": round(cpu, 2),
            "wall_seconds": round(took, 2),
            "scouts_dropped": log.count("scout offline"),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scouts", type=int, default=1000)
    parser.add_argument("--rotations", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(storm(args.scouts, args.rotations), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
