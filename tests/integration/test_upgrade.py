"""A real self-upgrade: two Troop wheels built here, the old one in a scout's own virtual
environment, `troop scout upgrade` to the new one, and a broken wheel that is rolled back."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import run_json
from troop.localfleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
PY = Path(sys.executable)


def build_wheel(work: Path, version: str, *, broken: bool = False) -> Path:
    tree = work / f"src-{version}"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    pyproject = tree / "pyproject.toml"
    pyproject.write_text(re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M))
    init = tree / "src" / "troop" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{version}"', init.read_text()))
    if broken:  # installs fine, but the scout dies at start
        (tree / "src" / "troop" / "scout" / "agent.py").write_text("raise SystemExit('broken build')\n")
    subprocess.run(
        [
            str(PY),
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work / "wheels"),
            str(tree),
        ],
        check=True,
        capture_output=True,
    )
    return next((work / "wheels").glob(f"troopstack-{version}-*.whl"))


def scout_venv(work: Path, wheel: Path) -> Path:
    """A venv of the scout's own, with pip; its libraries come from the test environment."""
    venv = work / "scout-venv"
    subprocess.run([str(PY), "-m", "venv", str(venv)], check=True, capture_output=True)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages") and (Path(p) / "msgspec").exists())
    (site / "troop-test-deps.pth").write_text(str(deps) + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def kill_scouts_of(data_dir: Path) -> None:
    """The upgraded scout was started by scout_manager, not by the test: find it by its data dir."""
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(data_dir).encode() in cmdline and int(pid) != os.getpid():
            with_suppress_kill(int(pid))


def with_suppress_kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("wheels")
    return {v: build_wheel(work, v, broken=(v == "9.2.0")) for v in ("9.0.0", "9.1.0", "9.2.0")}


@pytest.fixture
def old_scout(tmp_path: Path, wheels: dict[str, Path]) -> Iterator[tuple[Fleet, Path]]:
    venv = scout_venv(tmp_path, wheels["9.0.0"])
    fleet = Fleet(tmp_path / "fleet", env={"TROOP_UPGRADE_WAIT": "20", "TROOP_RECONNECT_MAX": "1"})
    data_dir = fleet.root / "scouts" / "u1"
    try:
        fleet.start_general()
        args = [
            str(venv / "bin" / "troop-scout"),
            "--general",
            f"127.0.0.1:{fleet.scout_port}",
            "--hostname",
            "u1",
            "--data-dir",
            str(data_dir),
        ]
        fleet.scouts["u1"] = subprocess.Popen(
            args, stdout=(fleet.root / "scout-u1.log").open("ab"), stderr=subprocess.STDOUT, env=fleet.env
        )
        fleet.wait_online(["u1"])
        wait_for_scout_manager(fleet)
        yield fleet, data_dir
    finally:
        fleet.stop()
        kill_scouts_of(data_dir)


def wait_for_scout_manager(fleet: Fleet) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, job = run_json(fleet, "plugin", "versions", "u1", "scout_manager")
        if (job["hosts"]["u1"].get("data") or {}).get("version"):
            return
        time.sleep(0.5)
    raise AssertionError(f"scout_manager never installed: {job}")


def scout_version(fleet: Fleet) -> str:
    return str(next(h["version"] for h in fleet.api("GET", "/api/v1/hosts")["hosts"] if h["hostname"] == "u1"))


def test_upgrade_to_a_new_wheel_then_a_broken_one_rolls_back(
    old_scout: tuple[Fleet, Path], wheels: dict[str, Path]
) -> None:
    fleet, data_dir = old_scout
    assert scout_version(fleet) == "9.0.0"
    code, job = run_json(fleet, "scout", "upgrade", "u1", "--to", str(wheels["9.1.0"]))
    host = job["hosts"]["u1"]
    assert code == 0 and host["state"] == "succeeded", (job, (data_dir / "lifecycle" / "scout_manager.log").read_text())
    assert host["data"]["old"] == "9.0.0" and host["data"]["new"] == "9.1.0"
    fleet.wait_online(["u1"])
    assert scout_version(fleet) == "9.1.0"
    code, job = run_json(fleet, "scout", "upgrade", "u1", "--to", str(wheels["9.2.0"]))
    host = job["hosts"]["u1"]
    assert code == 1 and host["state"] == "failed" and host["data"].get("rolled_back") is True, job
    assert "9.1.0" in host["error"]
    fleet.wait_online(["u1"])
    assert scout_version(fleet) == "9.1.0"
    code, job = run_json(fleet, "ping", "u1")
    assert code == 0


def test_restart_comes_back_and_reports(old_scout: tuple[Fleet, Path]) -> None:
    fleet, _ = old_scout
    code, job = run_json(fleet, "scout", "restart", "u1")
    host = job["hosts"]["u1"]
    assert code == 0 and host["state"] == "succeeded", job
    assert host["data"]["pid"] != fleet.scouts["u1"].pid
    fleet.wait_online(["u1"])
    assert run_json(fleet, "ping", "u1")[0] == 0
