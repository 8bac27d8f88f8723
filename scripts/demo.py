"""`make demo`: a General on the embedded default and three local scouts, driven by the real CLI."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path

from troop.localfleet import Fleet


def show(fleet: Fleet, *args: str) -> int:
    print(f"\n$ troop {' '.join(shlex.quote(a) for a in args)}", flush=True)
    result = fleet.cli(*args)
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    print(f"(exit {result.returncode})", flush=True)
    return result.returncode


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="troop-demo-") as tmp:
        fleet = Fleet(Path(tmp))
        try:
            print(f"Starting a General (SQLite in {fleet.general_dir}, auto_accept on for the demo)...")
            fleet.start_general()
            for name, tag in (("web1", "web"), ("web2", "web"), ("db1", "db")):
                fleet.start_scout(name, tag)
            fleet.wait_online(["web1", "web2", "db1"])
            print("Three scouts online: web1, web2 (tag web), db1 (tag db).")
            codes = [
                show(fleet, "ping", "*"),
                show(fleet, "cmd", "*", "--tag", "web", "--", "uname", "-a"),
                show(fleet, "cmd", "*", "--tag", "web", "--one", "--", "hostname"),
                show(fleet, "key", "list"),
            ]
            jobs = json.loads(fleet.cli("job", "list", "--json").stdout)["jobs"]
            # The first job the demo ran: the ping (the General's own plugin syncs are listed too).
            first = [j for j in jobs if j["kind"] == "ping" and j["created_by"] != "troop-general"][-1]
            codes.append(show(fleet, "job", "show", first["job"]))
        finally:
            fleet.stop()
        print("\nStopped the General and every scout.")
        if any(codes):
            print("demo: a step failed", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
