"""Real processes for the security suite: one General and its scouts, shared by the package.

Tests that must break things (reject, delete, restart, pin) start fleets of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.security.rawscout import RawGeneral
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.crypto import KeyPair

MAX_UPLOAD = 64 * 1024


@pytest.fixture(scope="session")
def secfleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A General (auto_accept, grace 1 s, 64 KiB uploads) with web1, web2 (tag web), db1 (tag db),
    and keyok, a scout whose policy lets file tasks into its own data dir."""
    root = tmp_path_factory.mktemp("security")
    config = root / "general.toml"
    config.write_text(f"grace = 1.0\nmax_upload = {MAX_UPLOAD}\nkey_bits = 2048\n")
    fleet = Fleet(root / "fleet", env={"TROOP_RECONNECT_MAX": "2"})
    try:
        fleet.start_general("--config", str(config))
        fleet.start_scout("web1", "web")
        fleet.start_scout("web2", "web")
        fleet.start_scout("db1", "db")
        fleet.start_scout("keyok", "allowkey", env={"TROOP_ALLOW_DATA_DIR": "true"})
        fleet.wait_online(["web1", "web2", "db1", "keyok"])
        # The General syncs scout_manager to each new scout: let those jobs end, so the tests'
        # before-and-after snapshots of the job list see only what the tests did.
        fleet._wait(
            lambda: all(j["state"] == "done" for j in fleet.api("GET", "/api/v1/jobs?limit=100")["jobs"]),
            60,
            "the plugin sync jobs",
        )
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="session")
def keyfor() -> Callable[[str], KeyPair]:
    """One RSA key per raw scout name, made once per test session."""
    made: dict[str, KeyPair] = {}

    def get(name: str) -> KeyPair:
        if name not in made:
            made[name] = KeyPair.generate(2048)
        return made[name]

    return get


class Victim:
    """A real troop-scout whose General is a RawGeneral that the test drives by hand."""

    def __init__(self, general: RawGeneral, fleet: Fleet, work: Path) -> None:
        self.general, self.fleet, self.work = general, fleet, work
        self.log = fleet.root / "scout-victim.log"
        self._n = 0

    def marker(self, name: str) -> Path:
        return self.work / name

    def task(self, marker: Path, task_id: str | None = None, timeout: float = 10.0) -> messages.Task:
        """A cmd task that appends one line to `marker` each time it runs."""
        self._n += 1
        return messages.Task(
            task_id=task_id or f"t{self._n}-{marker.name}",
            job_id="rawjob",
            kind="cmd",
            timeout=timeout,
            command=messages.Command(shell=f"echo ran >> {marker}"),
        )

    def runs(self, marker: Path) -> int:
        return marker.read_text().count("ran") if marker.exists() else 0


@pytest.fixture(scope="session")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    root = tmp_path_factory.mktemp("victim")
    general = RawGeneral(KeyPair.generate(2048))
    # Quick reconnects: every refused frame costs the scout its connection.
    fleet = Fleet(root / "fleet", env={"TROOP_RECONNECT_MIN": "0.05", "TROOP_RECONNECT_MAX": "0.3"})
    work = root / "work"
    work.mkdir()
    try:
        fleet.start_scout("victim", extra=("--general", f"127.0.0.1:{general.port}"))
        yield Victim(general, fleet, work)
    finally:
        fleet.stop()
        general.close()
