"""Real troop-general and troop-scout processes over real sockets, one fleet per module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from troop.localfleet import Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A General (auto_accept) and web1, web2 (tag web), db1 (tag db)."""
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        f.start_general()
        f.start_scout("web1", "web")
        f.start_scout("web2", "web", "blue")
        f.start_scout("db1", "db")
        f.wait_online(["web1", "web2", "db1"])
        yield f
    finally:
        f.stop()


@pytest.fixture
def new_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """An empty fleet of this test's own; start what the test needs."""
    # Short reconnect delays keep the tests quick; the defaults are tested by their own unit tests.
    f = Fleet(tmp_path / "fleet", env={"TROOP_RECONNECT_MAX": "3"})
    try:
        yield f
    finally:
        f.stop()


def run_json(fleet: Fleet, *args: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    argv = list(args)
    argv.insert(argv.index("--") if "--" in argv else len(argv), "--json")
    result = fleet.cli(*argv, token=token)
    assert result.stdout.strip(), f"no JSON from troop {args}: {result.stderr}"
    return result.returncode, json.loads(result.stdout)
