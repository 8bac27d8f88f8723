"""The scout's lifecycle: scout.* tasks on the scout's side, and the scout_manager zipapp.

Scout side: a stand-in scout_manager (a script that records how it was called) is installed
in a real plugin store, and markers are real files. scout_manager: the real zipapp, built
once, is run as a program against real processes: a fake scout (a `troop` package whose
`__main__` plays the scout: it "reports" and deletes lifecycle markers when it starts, as
the real one does after its handshake) in a throwaway virtual environment made with
`venv --without-pip`, where a fake `pip` module installs a wheel by unzipping it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_scout_files import KEY, BlobServer, Route, sha
from troop import __version__
from troop.protocol import messages
from troop.protocol.blobstream import seal_all
from troop.scout import lifecycle, platform
from troop.scout.plugins import PluginStore
from troop.scout.settings import ScoutSettings
from troop.scout_manager import __main__ as manager
from troop.scout_manager.build import bake_version, build_zipapp

pytestmark = pytest.mark.skipif(platform.is_windows(), reason="POSIX processes and signals")

SRC = Path(__file__).resolve().parents[2] / "src" / "troop" / "scout_manager"

# ---------------------------------------------------------------- scout side: scout.* tasks

FAKE_MANAGER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_MANAGER_CALLS"], "a") as f:
    env = {k: v for k, v in os.environ.items() if k.startswith("TROOP_SCOUT_")}
    f.write(json.dumps({"argv": sys.argv[1:], "env": env}) + "\\n")
if os.environ.get("FAKE_MANAGER_FAIL"):
    print("cannot detach: no room", file=sys.stderr)
    sys.exit(1)
"""


@dataclass
class Scout:
    settings: ScoutSettings
    store: PluginStore
    calls_file: Path

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def markers(self) -> list[str]:
        return sorted(p.name for p in (self.data_dir / "lifecycle").glob("*.json"))


@pytest.fixture
def scout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scout:
    data_dir = tmp_path / "data"
    store = PluginStore(data_dir / "plugins", [])
    path = store.path("scout_manager")
    path.parent.mkdir(parents=True)
    path.write_text(FAKE_MANAGER)
    path.chmod(0o755)
    store.record("scout_manager", "0.1.0", sha(FAKE_MANAGER.encode()))
    monkeypatch.setenv("FAKE_MANAGER_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    return Scout(ScoutSettings(data_dir=data_dir), store, tmp_path / "calls.jsonl")


def task(kind: str, task_id: str = "t1", **args: Any) -> messages.Task:
    return messages.Task(task_id=task_id, job_id="j1", kind=kind, timeout=60.0, args=args)


ARGV = [sys.executable, "-m", "troop.scout.main", "--general", "g:6954", "--data-dir", "data"]


async def test_restart_writes_a_marker_and_hands_over(scout: Scout) -> None:
    before = time.time()
    assert await lifecycle.start(task("scout.restart"), scout.store, scout.settings, ARGV) is None
    marker = json.loads((scout.data_dir / "lifecycle" / "t1.json").read_text())
    assert marker.pop("started") >= before
    assert marker == {
        "task_id": "t1",
        "kind": "scout.restart",
        "old_version": __version__,
        "error": None,
        "pid": os.getpid(),
    }
    [call] = scout.calls()
    assert call["argv"] == ["restart"]
    assert call["env"] == {
        "TROOP_SCOUT_PID": str(os.getpid()),
        "TROOP_SCOUT_PYTHON": sys.executable,
        "TROOP_SCOUT_ARGV": json.dumps(ARGV).replace(", ", ","),
        "TROOP_SCOUT_DATA_DIR": str(scout.data_dir.resolve()),
        "TROOP_SCOUT_TASK_ID": "t1",
        "TROOP_SCOUT_SYSTEMD": "0",
    }
    assert json.loads(call["env"]["TROOP_SCOUT_ARGV"]) == ARGV
    # A second restart before this process is gone would only race the first.
    again = await lifecycle.start(task("scout.restart", "t2"), scout.store, scout.settings, ARGV)
    assert again is not None and again.state == "failed"
    assert again.error == "a scout restart or upgrade is already under way (task t1)"


async def test_under_systemd_the_manager_is_told_so(scout: Scout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123abcd")
    assert await lifecycle.start(task("scout.restart"), scout.store, scout.settings, ARGV) is None
    assert scout.calls()[0]["env"]["TROOP_SCOUT_SYSTEMD"] == "1"


async def test_a_manager_that_fails_to_start_fails_the_task(scout: Scout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MANAGER_FAIL", "1")
    result = await lifecycle.start(task("scout.restart"), scout.store, scout.settings, ARGV)
    assert result is not None and result.state == "failed"
    assert result.error == "scout_manager restart failed: cannot detach: no room"
    assert scout.markers() == []  # no restart will happen: nothing to report later


async def test_without_scout_manager(scout: Scout) -> None:
    scout.store.path("scout_manager").unlink()
    for kind in lifecycle.KINDS:
        result = await lifecycle.start(task(kind), scout.store, scout.settings, ARGV)
        assert result is not None and (result.state, result.error) == ("failed", "scout_manager is not installed here")


async def test_stop_answers_first_and_stops_after(scout: Scout) -> None:
    began = time.monotonic()
    result = await lifecycle.start(task("scout.stop"), scout.store, scout.settings, ARGV)
    assert result is not None and (result.state, result.data) == ("succeeded", {})
    assert scout.calls() == []
    while not scout.calls() and time.monotonic() - began < 10:
        await asyncio.sleep(0.02)
    assert time.monotonic() - began >= lifecycle.STOP_DELAY
    assert [c["argv"] for c in scout.calls()] == [["stop"]]
    assert scout.markers() == []


async def test_upgrade_downloads_the_wheel_and_hands_over(scout: Scout) -> None:
    wheel = b"PK fake wheel"
    server = BlobServer()
    try:
        args: dict[str, Any] = {
            "wheel": "troopstack-0.2.0-py3-none-any.whl",
            "sha256": sha(wheel),
            "size": len(wheel),
            "key": KEY,
        }
        up = task("scout.upgrade", url=server.blob(wheel), **args)
        assert await lifecycle.start(up, scout.store, scout.settings, ARGV) is None
        tampered = {**args, "wheel": "troopstack-0.3.0-py3-none-any.whl", "url": server.blob(b"tampered")}
        bad = task("scout.upgrade", "t2", **tampered)
        scout.data_dir.joinpath("lifecycle", "t1.json").unlink()  # let a second one through
        failed = await lifecycle.start(bad, scout.store, scout.settings, ARGV)
    finally:
        server.close()
    path = scout.data_dir.resolve() / "lifecycle" / "troopstack-0.2.0-py3-none-any.whl"
    assert path.read_bytes() == wheel
    assert [c["argv"] for c in scout.calls()] == [["upgrade", str(path)]]
    assert failed is not None and failed.state == "failed"
    assert failed.error is not None and failed.error.startswith("cannot download the wheel: sha256 mismatch")
    assert scout.markers() == []


async def test_the_task_timeout_bounds_the_download(scout: Scout) -> None:
    wheel = b"PK slow wheel" * 1000
    server = BlobServer()
    try:
        server.routes["/slow"] = Route(200, seal_all(KEY, wheel), pause=0.8)
        args: dict[str, Any] = {
            "wheel": "troopstack-0.2.0-py3-none-any.whl",
            "sha256": sha(wheel),
            "size": len(wheel),
            "key": KEY,
        }
        up = task("scout.upgrade", url=server.url("/slow"), **args)
        result = await lifecycle.start(up, scout.store, scout.settings, ARGV, timeout=0.2)
    finally:
        server.close()
    assert result is not None and result.state == "timed_out"
    assert scout.calls() == [] and scout.markers() == []


@pytest.mark.parametrize("wheel", ["../troop.whl", "/tmp/x.whl", "troop.tar.gz", ".whl", 3, None])
async def test_upgrade_wants_a_plain_wheel_name(scout: Scout, wheel: object) -> None:
    result = await lifecycle.start(task("scout.upgrade", wheel=wheel), scout.store, scout.settings, ARGV)
    assert result is not None and result.state == "failed"
    assert result.error is not None and result.error.startswith("argument 'wheel' must be a plain *.whl file name")
    assert scout.calls() == []


def write_marker(data_dir: Path, task_id: str, kind: str, **extra: Any) -> Path:
    path = data_dir / "lifecycle" / f"{task_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = {"task_id": task_id, "kind": kind, "old_version": "0.0.9", "started": time.time() - 5, "error": None}
    path.write_text(json.dumps({**marker, "pid": 1, **extra}))
    return path


def test_pending_results_report_each_marker(tmp_path: Path) -> None:
    write_marker(tmp_path, "r1", "scout.restart")
    write_marker(tmp_path, "u1", "scout.upgrade")
    write_marker(tmp_path, "u2", "scout.upgrade", error="new version did not start: boom", new_version="0.2.0")
    mine = write_marker(tmp_path, "u3", "scout.upgrade", pid=os.getpid())  # handed over just now
    (tmp_path / "lifecycle" / "junk.json").write_text("{")
    results = {r.task_id: r for r in lifecycle.pending_results(tmp_path, "0.1.0")}
    assert sorted(results) == ["r1", "u1", "u2"]
    for result in results.values():
        messages.encode(result)
        assert 4 < result.duration < 60
    assert (results["r1"].state, results["r1"].data) == ("succeeded", {"version": "0.1.0", "pid": os.getpid()})
    assert (results["u1"].state, results["u1"].data) == (
        "succeeded",
        {"old": "0.0.9", "new": "0.1.0", "pid": os.getpid()},
    )
    failed = results["u2"]
    assert (failed.state, failed.error) == ("failed", "new version did not start: boom")
    assert failed.data == {"rolled_back": True, "old": "0.0.9", "new": "0.2.0"}
    assert not (tmp_path / "lifecycle" / "junk.json").exists()
    for task_id in results:
        lifecycle.clear_marker(tmp_path, task_id)
    lifecycle.clear_marker(tmp_path, "../../etc/passwd")  # not a marker name: ignored
    assert sorted(os.listdir(tmp_path / "lifecycle")) == [mine.name]


def test_how_the_manager_and_the_scout_are_started(tmp_path: Path) -> None:
    script = tmp_path / "m"
    script.write_text("#!/usr/bin/env python3\n")
    assert lifecycle.manager_argv(script) == [sys.executable, str(script)]
    script.write_text("#!/bin/sh\n")
    assert lifecycle.manager_argv(script) == [str(script)]
    assert lifecycle.restart_argv()[:3] == [sys.executable, "-m", "troop.scout.main"]


# ---------------------------------------------------------------- the zipapp


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zipapp(tmp_path_factory.mktemp("plugins"), "1.2.3")


def test_build_makes_a_runnable_reproducible_zipapp(zipapp: Path, tmp_path: Path) -> None:
    assert zipapp.name == "scout_manager-linux-v1.2.3" and zipapp.parent.name == "scout_manager"
    assert zipapp.stat().st_mode & 0o777 == 0o755
    assert zipapp.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    out = subprocess.run(["python3", str(zipapp), "version"], capture_output=True, text=True, check=True)
    assert out.stdout == "1.2.3\n"
    out = subprocess.run([str(zipapp), "version"], capture_output=True, text=True, check=True)  # via its #! line
    assert out.stdout == "1.2.3\n"
    assert build_zipapp(tmp_path, "v1.2.3").read_bytes() == zipapp.read_bytes()
    with zipfile.ZipFile(zipapp) as archive:
        assert sorted(archive.namelist()) == ["__main__.py", "scout_manager/__init__.py", "scout_manager/__main__.py"]
    with pytest.raises(ValueError, match="not a plugin version"):
        build_zipapp(tmp_path, "1.0; rm -rf /")
    with pytest.raises(ValueError, match="expected one VERSION line"):
        bake_version("VERSION = 1\n", "1.0.0")


def test_build_from_the_command_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "troop.scout_manager.build", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "scout_manager" / f"scout_manager-linux-v{__version__}")


def test_scout_manager_imports_only_the_standard_library() -> None:
    for name in ("__init__.py", "__main__.py"):
        tree = ast.parse((SRC / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in sys.stdlib_module_names | {"__future__"}, f"{name} imports {module}"


def run_manager(
    zipapp: Path, args: list[str], env: dict[str, str], timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(zipapp), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_usage_and_status(zipapp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROOP_SCOUT_")}
    assert run_manager(zipapp, [], env).returncode == 2
    assert run_manager(zipapp, ["upgrade"], env).returncode == 2
    missing = run_manager(zipapp, ["restart"], env)
    assert missing.returncode == 2 and "TROOP_SCOUT_PID" in missing.stderr
    running = run_manager(zipapp, ["status"], {**env, "TROOP_SCOUT_PID": str(os.getpid())})
    assert (running.returncode, running.stdout) == (0, f"scout pid {os.getpid()} is running\n")
    gone = subprocess.Popen(["true"])
    gone.wait()
    stopped = run_manager(zipapp, ["status"], {**env, "TROOP_SCOUT_PID": str(gone.pid)})
    assert stopped.returncode == 3 and "is not running" in stopped.stdout


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while manager.alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # exits, but stays a zombie: nobody has reaped it yet
    assert not manager.alive(child.pid)
    child.wait()


def test_helpers() -> None:
    assert manager.wheel_version("troopstack-0.2.0-py3-none-any.whl") == "0.2.0"
    assert manager.wheel_version("odd.whl") == ""
    argv = manager.systemd_run_argv(["python3", "m", "restart"], {"TROOP_SCOUT_PID": "7", "HOME": "/root"}, "u1")
    assert argv == [
        "systemd-run",
        "--quiet",
        "--collect",
        "--unit=u1",
        "--setenv=TROOP_SCOUT_PID=7",
        "python3",
        "m",
        "restart",
    ]


# ---------------------------------------------------------------- a fake scout in a throwaway venv

FAKE_SCOUT = """
import json, os, pathlib, signal, sys, time
import troop
MODE = {mode!r}
data = pathlib.Path(sys.argv[1])
if MODE == "broken":
    print("Traceback (most recent call last):\\nImportError: cannot import name 'boom'", file=sys.stderr)
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
if MODE == "good":  # the real scout does this after its handshake
    for marker in sorted((data / "lifecycle").glob("*.json")):
        with open(data / "reported.jsonl", "a") as f:
            f.write(json.dumps({{"by": troop.__version__, "marker": json.loads(marker.read_text())}}) + "\\n")
        marker.unlink()
tmp = data / f"running.{{os.getpid()}}"
tmp.write_text(f"{{troop.__version__}} {{os.getpid()}}")
os.replace(tmp, data / "running")
for _ in range(600):  # never outlive a test run by much
    time.sleep(0.05)
"""

FAKE_PIP = """
import json, os, pathlib, shutil, sys, sysconfig, zipfile
with open(os.environ["FAKE_PIP_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_PIP_FAIL"):
    print("ERROR: Could not install packages due to an OSError: no space left", file=sys.stderr)
    sys.exit(1)
site = pathlib.Path(sysconfig.get_paths()["purelib"])
shutil.rmtree(site / "troop", ignore_errors=True)
for old in site.glob("troopstack-*.dist-info"):
    shutil.rmtree(old)
zipfile.ZipFile(sys.argv[-1]).extractall(site)
"""


def package_files(version: str, mode: str) -> dict[str, str]:
    return {
        "troop/__init__.py": f"__version__ = {version!r}\n",
        "troop/__main__.py": FAKE_SCOUT.format(mode=mode),
        f"troopstack-{version}.dist-info/METADATA": f"Name: troopstack\nVersion: {version}\n",
    }


@dataclass
class Fleet:
    """One host: a venv with troop 1.0.0 installed, a data dir, the running fake scout."""

    python: Path
    site: Path
    data: Path
    zipapp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wheel(self, version: str, mode: str = "good") -> Path:
        path = self.data / "lifecycle" / f"troopstack-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in package_files(version, mode).items():
                archive.writestr(name, text)
        return path

    def running(self) -> tuple[str, int]:
        version, pid = (self.data / "running").read_text().split()
        return version, int(pid)

    def start_scout(self) -> int:
        proc = subprocess.Popen([str(self.python), "-m", "troop", str(self.data)], start_new_session=True)
        self.procs.append(proc)
        wait_for(lambda: (self.data / "running").exists() and self.running()[1] == proc.pid)
        return proc.pid

    def env(self, pid: int, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TROOP_")}
        return {
            **env,
            "TROOP_SCOUT_PID": str(pid),
            "TROOP_SCOUT_PYTHON": str(self.python),
            "TROOP_SCOUT_ARGV": json.dumps([str(self.python), "-m", "troop", str(self.data)]),
            "TROOP_SCOUT_DATA_DIR": str(self.data),
            "TROOP_SCOUT_TASK_ID": "up1",
            "TROOP_SCOUT_SYSTEMD": "0",
            "FAKE_PIP_LOG": str(self.data / "pip.jsonl"),
            **extra,
        }

    def installed_version(self) -> str:
        return (self.site / "troop" / "__init__.py").read_text()

    def reported(self) -> list[dict[str, Any]]:
        path = self.data / "reported.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture
def fleet(tmp_path: Path, zipapp: Path) -> Iterator[Fleet]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site] = venv.glob("lib/python*/site-packages")
    for name, text in {**package_files("1.0.0", "good"), "pip/__init__.py": "", "pip/__main__.py": FAKE_PIP}.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    data = tmp_path / "data"
    (data / "lifecycle").mkdir(parents=True)
    fleet = Fleet(venv / "bin" / "python", site, data, zipapp)
    yield fleet
    for proc in fleet.procs:
        proc.kill()
        proc.wait()
    if (data / "running").exists():  # a scout started by scout_manager, not by the test
        try:
            os.kill(fleet.running()[1], signal.SIGKILL)
        except ProcessLookupError:
            pass


def upgrade_marker(fleet: Fleet) -> None:
    write_marker(fleet.data, "up1", "scout.upgrade", old_version="1.0.0")


def test_stop(fleet: Fleet) -> None:
    pid = fleet.start_scout()
    done = run_manager(fleet.zipapp, ["stop", "--detached"], fleet.env(pid))
    assert done.returncode == 0, done.stderr
    assert not manager.alive(pid)
    assert "SIGTERM to scout pid" in (fleet.data / "lifecycle" / "scout_manager.log").read_text()


def test_restart_detaches_and_starts_the_scout_again(fleet: Fleet) -> None:
    pid = fleet.start_scout()
    done = run_manager(fleet.zipapp, ["restart"], fleet.env(pid))
    assert done.returncode == 0, done.stderr
    assert "continues in the background" in done.stdout
    wait_for(lambda: fleet.running()[1] != pid)  # the detached copy did the work
    assert not manager.alive(pid)
    assert manager.alive(fleet.running()[1])
    log = (fleet.data / "lifecycle" / "scout_manager.log").read_text()
    assert "started the scout" in log and "restart done" in log


def test_upgrade(fleet: Fleet) -> None:
    pid = fleet.start_scout()
    upgrade_marker(fleet)
    wheel = fleet.wheel("2.0.0")
    done = run_manager(fleet.zipapp, ["upgrade", str(wheel), "--detached"], fleet.env(pid))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: fleet.running()[0] == "2.0.0")  # written just after the marker is gone
    assert not manager.alive(pid)
    [report] = fleet.reported()
    assert report["by"] == "2.0.0" and report["marker"]["error"] is None
    assert report["marker"]["new_version"] == "2.0.0"
    assert "2.0.0" in fleet.installed_version()
    assert [p.name for p in fleet.site.glob("troopstack-*")] == ["troopstack-2.0.0.dist-info"]
    [pip_args] = [json.loads(line) for line in (fleet.data / "pip.jsonl").read_text().splitlines()]
    assert pip_args[:4] == ["install", "--no-deps", "--force-reinstall", "--no-index"] and pip_args[-1] == str(wheel)
    assert not wheel.exists() and not (fleet.data / "lifecycle" / "backup").exists()


def assert_rolled_back(fleet: Fleet, *phrases: str) -> None:
    wait_for(lambda: len(fleet.reported()) == 1)  # the old version, started again, reports it
    [report] = fleet.reported()
    assert report["by"] == "1.0.0"
    for phrase in phrases:
        assert phrase in report["marker"]["error"], report["marker"]["error"]
    assert "1.0.0" in fleet.installed_version()
    assert [p.name for p in fleet.site.glob("troopstack-*")] == ["troopstack-1.0.0.dist-info"]
    wait_for(lambda: fleet.running()[0] == "1.0.0")  # it writes this after its report


def test_upgrade_to_a_version_that_crashes_is_rolled_back(fleet: Fleet) -> None:
    pid = fleet.start_scout()
    upgrade_marker(fleet)
    done = run_manager(fleet.zipapp, ["upgrade", str(fleet.wheel("2.0.0", "broken")), "--detached"], fleet.env(pid))
    assert done.returncode == 0, done.stderr
    assert_rolled_back(
        fleet,
        "new version did not start (it exited with status 3)",
        "cannot import name 'boom'",
        "rolled back to 1.0.0",
    )


def test_upgrade_to_a_version_that_never_confirms_is_rolled_back(fleet: Fleet) -> None:
    pid = fleet.start_scout()
    upgrade_marker(fleet)
    env = fleet.env(pid, TROOP_UPGRADE_WAIT="0.5")
    done = run_manager(fleet.zipapp, ["upgrade", str(fleet.wheel("2.0.0", "silent")), "--detached"], env)
    assert done.returncode == 0, done.stderr
    assert_rolled_back(fleet, "no confirmation within 0.5s", "rolled back to 1.0.0")


def test_a_failed_pip_install_restarts_the_old_version(fleet: Fleet) -> None:
    pid = fleet.start_scout()
    upgrade_marker(fleet)
    env = fleet.env(pid, FAKE_PIP_FAIL="1")
    done = run_manager(fleet.zipapp, ["upgrade", str(fleet.wheel("2.0.0")), "--detached"], env)
    assert done.returncode == 0, done.stderr
    assert_rolled_back(fleet, "pip install failed: ERROR: Could not install packages", "rolled back to 1.0.0")
    assert not manager.alive(pid)


# ---------------------------------------------------------------- both sides together

SCOUT_PROCESS = """
import asyncio, json, shutil, sys, time
from pathlib import Path
import msgspec
from troop.protocol import messages
from troop.scout import lifecycle
from troop.scout.plugins import PluginStore
from troop.scout.settings import ScoutSettings

data, zipapp = Path(sys.argv[1]), Path(sys.argv[2])
store = PluginStore(data / "plugins", [])
if sys.argv[3:] == ["again"]:  # the restarted scout, as the agent after an accepted handshake
    results = lifecycle.pending_results(data, "9.9.9")
    # Written then renamed: the test polls for the file and must never read half of it.
    (data / "results.tmp").write_text(json.dumps([msgspec.to_builtins(r) for r in results]))
    (data / "results.tmp").rename(data / "results.json")
    for result in results:
        lifecycle.clear_marker(data, result.task_id)
    sys.exit(0)
path = store.path("scout_manager")
path.parent.mkdir(parents=True)
shutil.copy(zipapp, path)
store.record("scout_manager", "1.2.3", "0" * 64)
argv = [sys.executable, sys.argv[0], str(data), str(zipapp), "again"]
restart = messages.Task(task_id="r1", job_id="j1", kind="scout.restart", timeout=60.0)
print(asyncio.run(lifecycle.start(restart, store, ScoutSettings(data_dir=data), argv)), flush=True)
time.sleep(20)  # until scout_manager stops this process
"""


def test_a_scout_restarted_by_the_real_scout_manager_reports_the_task(tmp_path: Path, zipapp: Path) -> None:
    script = tmp_path / "scout.py"
    script.write_text(SCOUT_PROCESS)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROOP_") and k != "INVOCATION_ID"}
    first = subprocess.Popen([sys.executable, str(script), str(data), str(zipapp)], env=env, stdout=subprocess.PIPE)
    try:
        wait_for(lambda: (data / "results.json").exists())
        assert first.wait(5) == -signal.SIGTERM
        assert first.stdout is not None and first.stdout.read() == b"None\n"  # no result from the first process
    finally:
        first.kill()
        first.wait()
    [result] = json.loads((data / "results.json").read_text())
    assert (result["task_id"], result["state"], result["data"]["version"]) == ("r1", "succeeded", "9.9.9")
    assert result["data"]["pid"] != first.pid
    assert list((data / "lifecycle").glob("*.json")) == []
