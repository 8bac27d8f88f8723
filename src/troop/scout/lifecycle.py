"""``scout.stop``, ``scout.restart`` and ``scout.upgrade`` on the scout's side.

The scout cannot restart or upgrade itself from inside its own process, so it hands the work
to the ``scout_manager`` plugin, which detaches and outlives it (see docs/plugins.md). Before
the hand-over the scout writes a marker, ``DATA_DIR/lifecycle/TASK_ID.json``::

    {"task_id", "kind", "old_version", "started", "error": null, "pid"}

The task's result then comes from the *next* scout process: after its handshake it calls
:func:`pending_results`, queues what it returns, and deletes each marker with
:func:`clear_marker`. For an upgrade that deletion is the "I started fine" signal
scout_manager waits for; when it does not come, scout_manager rolls back and writes the
reason into the marker's ``error``, which the old version then reports.

``pid`` (the scout that wrote the marker) keeps a scout from answering its own hand-over:
should it reconnect in the moment before scout_manager stops it, the marker is not yet a
result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from troop import __version__
from troop.protocol.messages import Command, Result, Task
from troop.scout.plugins import SCOUT_MANAGER, PluginStore, write_json_atomic
from troop.scout.runner import run_command

if TYPE_CHECKING:
    from troop.scout.settings import ScoutSettings

log = logging.getLogger("troop.scout.lifecycle")

KINDS = ("scout.stop", "scout.restart", "scout.upgrade")
LIFECYCLE = "lifecycle"
STOP_DELAY = 0.5  # seconds between a stop's result and the stop: the result leaves first
LAUNCH_TIMEOUT = 30.0  # scout_manager's first process only detaches; this is generous
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_WHEEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}\.whl")
_background: set[asyncio.Task[None]] = set()  # delayed stops; referenced so they are not collected


def lifecycle_dir(data_dir: Path) -> Path:
    return data_dir / LIFECYCLE


def restart_argv() -> list[str]:
    """How to start this scout again: same interpreter, same module, same arguments.

    ``-m troop.scout.main`` rather than ``sys.argv[0]``: it works whether the scout was
    started as the ``troop-scout`` script or with ``python -m``, and after an upgrade it
    runs the new package's code.
    """
    return [sys.executable, "-m", "troop.scout.main", *sys.argv[1:]]


def manager_env(data_dir: Path, argv: list[str], task_id: str) -> dict[str, str]:
    """What scout_manager needs to know about this scout (laid over the scout's environment)."""
    return {
        "TROOP_SCOUT_PID": str(os.getpid()),
        "TROOP_SCOUT_PYTHON": sys.executable,
        "TROOP_SCOUT_ARGV": msgspec.json.encode(argv).decode(),
        "TROOP_SCOUT_DATA_DIR": str(data_dir),
        "TROOP_SCOUT_TASK_ID": task_id,
        # systemd sets INVOCATION_ID for the processes of a unit: restart through systemctl.
        "TROOP_SCOUT_SYSTEMD": "1" if "INVOCATION_ID" in os.environ else "0",
    }


def manager_argv(path: Path) -> list[str]:
    """The command line that runs the scout_manager at ``path``.

    A Python zipapp (ours) runs under the scout's own interpreter, which is known to work,
    rather than whatever ``python3`` its ``#!`` line finds; any other executable runs as is.
    """
    try:
        with path.open("rb") as f:
            first = f.readline(256)
    except OSError:
        first = b""
    if first.startswith(b"#!") and b"python" in first:
        return [sys.executable, str(path)]
    return [str(path)]


# ---------------------------------------------------------------- the task


async def start(
    task: Task, store: PluginStore, settings: ScoutSettings, argv: list[str], timeout: float | None = None
) -> Result | None:
    """Begin a lifecycle task. A Result to send now, or None: the next scout process reports it.

    ``argv`` starts this scout again (:func:`restart_argv`). ``timeout`` bounds the wheel's
    download only: once scout_manager is being started, a cancel could leave it half done,
    and the launch is bounded by LAUNCH_TIMEOUT anyway.
    """
    begin = time.monotonic()
    data_dir = settings.data_dir.resolve()  # scout_manager may run from another directory
    manager = store.path(SCOUT_MANAGER)
    if task.kind not in KINDS:
        return _failed(task.task_id, begin, f"not a lifecycle task: {task.kind!r}")
    if SCOUT_MANAGER not in store.installed() or not manager.is_file():
        return _failed(task.task_id, begin, "scout_manager is not installed here")
    if not _TASK_ID.fullmatch(task.task_id):
        return _failed(task.task_id, begin, f"task id {task.task_id!r} cannot name a marker file")
    under_way = _under_way(data_dir)
    if under_way is not None:
        return _failed(task.task_id, begin, f"a scout restart or upgrade is already under way (task {under_way})")
    env = manager_env(data_dir, argv, task.task_id)
    command = manager_argv(manager)
    if task.kind == "scout.stop":
        _later(STOP_DELAY, task.task_id, [*command, "stop"], env)
        return Result(task_id=task.task_id, state="succeeded", duration=time.monotonic() - begin)
    if task.kind == "scout.restart":
        return await _hand_over(task, data_dir, [*command, "restart"], env, begin)
    try:
        wheel = await asyncio.wait_for(_fetch_wheel(task, data_dir, begin), timeout)
    except TimeoutError:
        return Result(
            task_id=task.task_id, state="timed_out", error=f"the wheel's download timed out after {timeout:g}s"
        )
    if isinstance(wheel, Result):
        return wheel
    return await _hand_over(task, data_dir, [*command, "upgrade", str(wheel)], env, begin)


async def _hand_over(task: Task, data_dir: Path, argv: list[str], env: dict[str, str], begin: float) -> Result | None:
    """Write the marker, start scout_manager; None once it has taken over."""
    marker = {
        "task_id": task.task_id,
        "kind": task.kind,
        "old_version": __version__,
        "started": time.time(),
        "error": None,
        "pid": os.getpid(),
    }
    try:
        lifecycle_dir(data_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(_marker_path(data_dir, task.task_id), marker)
    except OSError as exc:
        return _failed(task.task_id, begin, f"cannot write the lifecycle marker: {exc.strerror or exc}")
    error = await _launch(task.task_id, argv, env)
    if error is not None:
        clear_marker(data_dir, task.task_id)  # nothing will happen: do not report a restart later
        return _failed(task.task_id, begin, error)
    log.info("%s handed to scout_manager", task.kind, extra={"fields": {"task": task.task_id}})
    return None


async def _launch(task_id: str, argv: list[str], env: dict[str, str]) -> str | None:
    """Run scout_manager until it has detached; the reason when it failed, else None."""
    result = await run_command(task_id, Command(argv=argv, env=env, max_output=64 * 1024), LAUNCH_TIMEOUT)
    if result.state == "succeeded":
        return None
    said = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-500:]
    action = argv[-2] if argv[-2:-1] == ["upgrade"] else argv[-1]
    return f"scout_manager {action} failed: {said or result.error or result.state}"


def _later(delay: float, task_id: str, argv: list[str], env: dict[str, str]) -> None:
    async def launch() -> None:
        await asyncio.sleep(delay)
        error = await _launch(task_id, argv, env)
        if error is not None:  # the task was already reported: the log is all that is left
            log.error("scout stop did not start: %s", error, extra={"fields": {"task": task_id}})

    running = asyncio.create_task(launch())
    _background.add(running)
    running.add_done_callback(_background.discard)


async def _fetch_wheel(task: Task, data_dir: Path, begin: float) -> Path | Result:
    """Download the announced wheel into the lifecycle dir; its path, or a failed Result."""
    from troop.scout import files  # the download machinery, only for an upgrade

    wheel = task.args.get("wheel")
    if not isinstance(wheel, str) or not _WHEEL.fullmatch(wheel):
        return _failed(task.task_id, begin, f"argument 'wheel' must be a plain *.whl file name, not {wheel!r}")
    dest = lifecycle_dir(data_dir) / wheel
    args: dict[str, Any] = {k: task.args[k] for k in ("sha256", "size", "url", "key") if k in task.args}
    args.update(dest=str(dest), name=wheel, mode=0o644, makedirs=True)
    # protected=[]: the lifecycle dir lies inside the scout's data dir, closed to file tasks.
    result = await files.push(task.task_id, args, protected=[])
    if result.state != "succeeded":
        return _failed(task.task_id, begin, f"cannot download the wheel: {result.error}")
    return dest


def _failed(task_id: str, begin: float, error: str) -> Result:
    log.warning("lifecycle task failed: %s", error, extra={"fields": {"task": task_id}})
    return Result(task_id=task_id, state="failed", error=error, duration=time.monotonic() - begin)


# ---------------------------------------------------------------- markers


def _marker_path(data_dir: Path, task_id: str) -> Path:
    return lifecycle_dir(data_dir) / f"{task_id}.json"


def read_markers(data_dir: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Every marker file with its content (None when it cannot be read as a marker)."""
    try:
        paths = sorted(lifecycle_dir(data_dir).glob("*.json"))
    except OSError:
        return []
    found: list[tuple[Path, dict[str, Any] | None]] = []
    for path in paths:
        if path.name.startswith("."):
            continue  # a temp file of an atomic write
        try:
            marker = msgspec.json.decode(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, msgspec.DecodeError):
            marker = None
        ok = isinstance(marker, dict) and isinstance(marker.get("task_id"), str) and marker.get("kind") in KINDS
        found.append((path, marker if ok else None))
    return found


def _under_way(data_dir: Path) -> str | None:
    """The task id of a restart or upgrade this process has already handed over, if any."""
    for _path, marker in read_markers(data_dir):
        if marker is not None and marker.get("pid") == os.getpid():
            return str(marker["task_id"])
    return None


def pending_results(data_dir: Path, version: str) -> list[Result]:
    """The results of lifecycle tasks a previous scout process handed over, oldest first.

    Queue them, then :func:`clear_marker` each one. Unreadable markers are deleted here
    (no task can be named for them); markers of this very process are left alone.
    """
    results: list[Result] = []
    for path, marker in read_markers(data_dir):
        if marker is None:
            log.warning("deleted an unreadable lifecycle marker %s", path)
            path.unlink(missing_ok=True)
            continue
        if marker.get("pid") == os.getpid():
            continue
        results.append(_marker_result(marker, version))
    return sorted(results, key=lambda r: -r.duration)


def _marker_result(marker: dict[str, Any], version: str) -> Result:
    started = marker.get("started")
    duration = max(0.0, time.time() - started) if isinstance(started, (int, float)) else 0.0
    old = marker.get("old_version")
    if marker.get("error"):
        data = {"rolled_back": True, "old": old, "new": marker.get("new_version")}
        return Result(
            task_id=marker["task_id"], state="failed", error=str(marker["error"]), duration=duration, data=data
        )
    if marker["kind"] == "scout.restart":
        data = {"version": version, "pid": os.getpid()}
    else:
        data = {"old": old, "new": version, "pid": os.getpid()}
    return Result(task_id=marker["task_id"], state="succeeded", duration=duration, data=data)


def clear_marker(data_dir: Path, task_id: str) -> None:
    """Delete a task's marker: its result is queued (for an upgrade: the new version is good)."""
    if not _TASK_ID.fullmatch(task_id):
        return
    try:
        _marker_path(data_dir, task_id).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot delete the lifecycle marker of %s: %s", task_id, exc)
