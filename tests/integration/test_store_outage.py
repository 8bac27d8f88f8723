"""A PostgreSQL outage makes the API answer 503 with a clear message, not hang; recovery is
automatic, with no General restart."""

from __future__ import annotations

import time
from pathlib import Path

from tests.missing import no_server
from tests.services import start_postgres
from troop.localfleet import Fleet


def test_store_outage_gives_503_then_recovers(tmp_path: Path) -> None:
    try:
        pg = start_postgres()
    except RuntimeError as exc:
        no_server(str(exc))
    fleet = Fleet(tmp_path / "fleet")
    try:
        fleet.start_general("--store", pg.url)
        fleet.start_scout("o1")
        fleet.wait_online(["o1"])
        assert fleet.cli("ping", "o1").returncode == 0
        pg.kill()
        start = time.monotonic()
        result = fleet.cli("job", "list")
        assert time.monotonic() - start < 10, "the API hung on a dead store"
        assert result.returncode == 2 and "503" in result.stderr and "unavailable" in result.stderr
        pg.restart()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fleet.cli("ping", "o1").returncode != 0:
            time.sleep(0.5)
        assert fleet.cli("ping", "o1").returncode == 0  # recovered, same General process
        assert fleet.general is not None and fleet.general.poll() is None
    finally:
        fleet.stop()
        pg.stop()
