"""``scout_manager version|status|stop|restart|upgrade WHEEL``: the scout's lifecycle, from outside it.

The scout runs this with ``TROOP_SCOUT_PID``, ``TROOP_SCOUT_PYTHON``, ``TROOP_SCOUT_ARGV``
(JSON), ``TROOP_SCOUT_DATA_DIR``, ``TROOP_SCOUT_TASK_ID`` and ``TROOP_SCOUT_SYSTEMD`` set
(see docs/plugins.md). Every action but ``version`` and ``status`` first starts a detached
copy of itself (a new session, or a transient systemd unit under systemd, so that stopping
the scout's unit does not take it along) and exits 0 at once; the copy does the work and
logs each step to ``DATA_DIR/lifecycle/scout_manager.log``.

An upgrade stops the scout before pip replaces its files (a running scout imports some
modules lazily, and must not load half-new code), keeps a copy of the old ``troop`` package
and its ``troopstack-*.dist-info``, and puts that copy back when pip fails or the new scout
does not confirm (by deleting its lifecycle marker) in time. Whatever happens, a scout is
running at the end, and the marker says how the task went.

STDLIB ONLY: see the package docstring.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import VERSION

log = logging.getLogger("scout_manager")

SERVICE = "troop-scout"
STOP_WAIT = 10.0  # seconds for the scout to exit after SIGTERM, before SIGKILL
KILL_WAIT = 5.0
UPGRADE_WAIT = 60.0  # seconds for a new scout to confirm; TROOP_UPGRADE_WAIT overrides
POLL = 0.05
TAIL_LINES = 20
PIP_TIMEOUT = 600.0
USAGE = "usage: scout_manager version|status|stop|restart|upgrade WHEEL"
OWN_VARS = frozenset(
    {
        "TROOP_SCOUT_PID",
        "TROOP_SCOUT_PYTHON",
        "TROOP_SCOUT_ARGV",
        "TROOP_SCOUT_DATA_DIR",
        "TROOP_SCOUT_TASK_ID",
        "TROOP_SCOUT_SYSTEMD",
    }
)
_NEEDED = ("TROOP_SCOUT_PID", "TROOP_SCOUT_PYTHON", "TROOP_SCOUT_ARGV", "TROOP_SCOUT_DATA_DIR")
_DETACHED_PROCESS = 0x00000008  # Windows creation flags, not defined by subprocess on POSIX
_CREATE_NEW_PROCESS_GROUP = 0x00000200


class UsageError(Exception):
    """Wrong arguments or environment: exit status 2."""


class ManagerError(Exception):
    """A step that failed; the message goes into the log and, for an upgrade, the marker."""


@dataclass(frozen=True)
class Scout:
    """The scout being managed, as its environment variables describe it."""

    pid: int
    python: str = sys.executable
    argv: list[str] = field(default_factory=list)
    data_dir: Path = Path(".")
    systemd: bool = False
    task_id: str = ""

    @property
    def lifecycle(self) -> Path:
        return self.data_dir / "lifecycle"

    @property
    def log_path(self) -> Path:
        return self.lifecycle / "scout_manager.log"

    @property
    def console_log(self) -> Path:
        return self.data_dir / "scout.log"  # stdout and stderr of a scout started from here

    @property
    def backup_dir(self) -> Path:
        return self.lifecycle / "backup"


def scout_from_env(environ: Mapping[str, str], action: str) -> Scout:
    needed = ("TROOP_SCOUT_PID",) if action == "status" else _NEEDED
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        raise UsageError(f"{', '.join(missing)} not set: scout_manager {action} is run by the scout")
    try:
        pid = int(environ["TROOP_SCOUT_PID"])
        argv = json.loads(environ.get("TROOP_SCOUT_ARGV") or "[]")
    except ValueError as exc:
        raise UsageError(f"bad TROOP_SCOUT_PID or TROOP_SCOUT_ARGV: {exc}") from None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or (action != "status" and not argv):
        raise UsageError("TROOP_SCOUT_ARGV must be a JSON list of strings")
    return Scout(
        pid=pid,
        python=environ.get("TROOP_SCOUT_PYTHON") or sys.executable,
        argv=argv,
        data_dir=Path(environ.get("TROOP_SCOUT_DATA_DIR") or ".").absolute(),
        systemd=environ.get("TROOP_SCOUT_SYSTEMD") == "1",
        task_id=environ.get("TROOP_SCOUT_TASK_ID", ""),
    )


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    detached = "--detached" in args
    args = [a for a in args if a != "--detached"]
    action = args[0] if args else ""
    if action not in ("version", "status", *ACTIONS) or len(args) != (2 if action == "upgrade" else 1):
        print(USAGE, file=sys.stderr)
        return 2
    if action == "version":
        print(VERSION)
        return 0
    try:
        scout = scout_from_env(os.environ if environ is None else environ, action)
    except UsageError as exc:
        print(f"scout_manager: {exc}", file=sys.stderr)
        return 2
    if action == "status":
        return status(scout)
    _setup_logging(scout)
    if not detached:
        return detach(scout, args)
    log.info("%s begins (scout pid %d, systemd %s, version %s)", shlex.join(args), scout.pid, scout.systemd, VERSION)
    try:
        ACTIONS[action](scout, *args[1:])
    except Exception:
        log.exception("%s failed", action)
        return 1
    log.info("%s done", action)
    return 0


def _setup_logging(scout: Scout) -> None:
    # One place for the steps: the log file (a detached run's stderr goes there too, for
    # tracebacks); stderr only when the file cannot be opened.
    handler: logging.Handler
    try:
        scout.lifecycle.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(scout.log_path, encoding="utf-8")
    except OSError as exc:
        print(f"scout_manager: cannot log to {scout.log_path}: {exc}", file=sys.stderr)
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s scout_manager[%(process)d] %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def status(scout: Scout) -> int:
    if alive(scout.pid):
        print(f"scout pid {scout.pid} is running")
        return 0
    print(f"scout pid {scout.pid} is not running")
    return 3  # as LSB init scripts say "not running"


# ---------------------------------------------------------------- detaching


def self_command() -> list[str]:
    """How to run this program again: the zipapp, or the package when run from source."""
    archive = sys.argv[0]
    if archive and os.path.isfile(archive) and zipfile.is_zipfile(archive):
        return [sys.executable, os.path.abspath(archive)]
    return [sys.executable, "-m", __package__ or "scout_manager"]


def detach_kwargs() -> dict[str, Any]:
    """Popen arguments for a process that outlives its parent and its parent's session."""
    if sys.platform == "win32":
        return {"creationflags": _DETACHED_PROCESS | _CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def detach(scout: Scout, args: list[str]) -> int:
    """Start ``args`` again in the background, detached; return at once."""
    command = [*self_command(), *args, "--detached"]
    if scout.systemd and shutil.which("systemd-run") and _systemd_run(command):
        where = "a transient systemd unit"
    else:
        with open(scout.log_path, "ab") as out:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **detach_kwargs()
            )
        where = f"pid {child.pid}"
    log.info("%s continues in %s", args[0], where)
    print(f"scout_manager {args[0]}: continues in the background in {where} (log: {scout.log_path})")
    return 0


def systemd_run_argv(command: list[str], environ: Mapping[str, str], unit: str) -> list[str]:
    """systemd-run for ``command`` in a unit of its own: stopping troop-scout then leaves it be."""
    setenv = [f"--setenv={k}={v}" for k, v in sorted(environ.items()) if k.startswith("TROOP_")]
    return ["systemd-run", "--quiet", "--collect", f"--unit={unit}", *setenv, *command]


def _systemd_run(command: list[str]) -> bool:
    argv = systemd_run_argv(command, os.environ, f"troop-scout-manager-{os.getpid()}")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("systemd-run failed (%s); detaching without it", exc)
        return False
    if done.returncode != 0:
        log.warning("systemd-run failed (%s); detaching without it", done.stderr.strip() or done.returncode)
        return False
    return True


# ---------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    if sys.platform == "win32":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS, BSD): kill(0) is all we know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _alive_windows(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows: ask for its exit code instead.
    import ctypes

    if sys.platform != "win32":
        raise OSError("not Windows")
    kernel = ctypes.windll.kernel32
    handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    code = ctypes.c_ulong()
    try:
        return bool(kernel.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel.CloseHandle(handle)


def _wait_dead(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def stop_pid(pid: int, wait: float = STOP_WAIT) -> None:
    """SIGTERM, up to ``wait`` seconds to exit, then SIGKILL."""
    if not alive(pid):
        log.info("scout pid %d is not running", pid)
        return
    log.info("SIGTERM to scout pid %d", pid)
    _signal(pid, signal.SIGTERM)
    if _wait_dead(pid, wait):
        log.info("scout pid %d exited", pid)
        return
    log.warning("scout pid %d still runs after %gs: SIGKILL", pid, wait)
    _signal(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    if not _wait_dead(pid, KILL_WAIT):
        raise ManagerError(f"scout pid {pid} did not die")


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Stop a scout started here: our child, so wait() reaps it and tells when it is gone."""
    if proc.poll() is not None:
        return
    log.info("SIGTERM to the new scout, pid %d", proc.pid)
    proc.terminate()
    try:
        proc.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        log.warning("the new scout, pid %d, still runs after %gs: SIGKILL", proc.pid, STOP_WAIT)
        proc.kill()
        proc.wait(KILL_WAIT)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def systemctl(verb: str) -> None:
    log.info("systemctl %s %s", verb, SERVICE)
    done = subprocess.run(["systemctl", verb, SERVICE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ManagerError(f"systemctl {verb} {SERVICE} failed: {done.stderr.strip() or done.returncode}")


def start_scout(scout: Scout) -> subprocess.Popen[bytes] | None:
    """Start the scout (detached, its output appended to DATA_DIR/scout.log); None under systemd."""
    if scout.systemd:
        systemctl("start")
        return None
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARS}
    with open(scout.console_log, "ab") as out:
        proc = subprocess.Popen(
            scout.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, **detach_kwargs()
        )
    log.info("started the scout, pid %d: %s", proc.pid, shlex.join(scout.argv))
    return proc


def stop_scout(scout: Scout) -> None:
    if scout.systemd:
        systemctl("stop")
    else:
        stop_pid(scout.pid)


# ---------------------------------------------------------------- stop, restart


def stop(scout: Scout) -> None:
    stop_scout(scout)


def restart(scout: Scout) -> None:
    if scout.systemd:
        systemctl("restart")
        return
    stop_pid(scout.pid)
    start_scout(scout)


# ---------------------------------------------------------------- upgrade


@dataclass(frozen=True)
class Layout:
    """Where the scout's ``troop`` package is installed."""

    site: Path
    package: Path
    dist_infos: list[Path]
    version: str


def upgrade(scout: Scout, wheel: str) -> None:
    wheel_path = Path(wheel).absolute()
    markers = upgrade_markers(scout)
    update_markers(markers, {"new_version": wheel_version(wheel_path.name)})
    try:
        layout = locate(scout.python, scout.lifecycle)
        backup(layout, scout.backup_dir)
    except (ManagerError, OSError) as exc:
        fail(markers, f"upgrade not started: {exc}")
        restart(scout)  # the scout reports the failure after its next handshake
        return
    stop_scout(scout)
    error = pip_install(scout.python, wheel_path, scout.lifecycle)
    if error is not None:
        restore(layout, scout.backup_dir)  # pip may have removed the old files before it failed
        fail(markers, f"pip install failed: {error}; rolled back to {layout.version}")
        start_scout(scout)
        return
    confirm_or_roll_back(scout, markers, layout)
    _cleanup(scout, wheel_path)


def confirm_or_roll_back(scout: Scout, markers: list[Path], layout: Layout) -> None:
    """Start the new scout and wait for its confirmation; else put the old version back."""
    offset = _size(scout.console_log)
    proc = start_scout(scout)
    why = wait_for_confirmation(markers, proc, upgrade_wait())
    if why is None:
        log.info("the new scout confirmed the upgrade")
        return
    log.warning("the new scout did not confirm: %s", why)
    tail = log_tail(scout, offset)
    if proc is not None:
        stop_child(proc)
    else:
        systemctl("stop")
    if markers and not any(m.exists() for m in markers):
        log.info("the new scout confirmed while it was being stopped: starting it again")
        start_scout(scout)
        return
    restore(layout, scout.backup_dir)
    fail(markers, f"new version did not start ({why}): {tail}; rolled back to {layout.version}")
    start_scout(scout)


def wait_for_confirmation(markers: list[Path], proc: subprocess.Popen[bytes] | None, wait: float) -> str | None:
    """None once every marker is gone; else why not (the scout exited, or time ran out)."""
    if not markers:
        log.warning("no scout.upgrade marker to wait for: the new scout is not checked")
        return None
    deadline = time.monotonic() + wait
    while any(m.exists() for m in markers):
        if proc is not None and proc.poll() is not None:
            return f"it exited with status {proc.returncode}"
        if time.monotonic() >= deadline:
            return f"no confirmation within {wait:g}s"
        time.sleep(POLL)
    return None


def upgrade_wait() -> float:
    try:
        return float(os.environ.get("TROOP_UPGRADE_WAIT", UPGRADE_WAIT))
    except ValueError:
        return UPGRADE_WAIT


def wheel_version(name: str) -> str:
    """The version in a wheel's name: NAME-VERSION-TAGS.whl ("0.2.0" for troopstack-0.2.0-py3-none-any.whl)."""
    parts = name.split("-")
    return parts[1] if len(parts) >= 3 else ""


def locate(python: str, cwd: Path) -> Layout:
    """Find the scout's installed ``troop`` package and its dist-info, through its interpreter."""
    code = "import troop; print(troop.__file__); print(getattr(troop, '__version__', ''))"
    # cwd: not the scout's, where a stray "troop" directory would shadow the installed one.
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    if done.returncode != 0:
        raise ManagerError(f"{python} cannot import troop: {_last_lines(done.stderr, 5)}")
    lines = done.stdout.splitlines()
    package = Path(lines[0]).parent
    site = package.parent
    dist_infos = sorted(site.glob("troopstack-*.dist-info"))
    if not dist_infos:
        raise ManagerError(f"{package} has no troopstack-*.dist-info beside it: not an installed package")
    version = lines[1] if len(lines) > 1 else ""
    log.info("the scout runs troop %s from %s", version, package)
    return Layout(site=site, package=package, dist_infos=dist_infos, version=version)


def backup(layout: Layout, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__")  # rebuilt on import; not worth the copy
    shutil.copytree(layout.package, dest / layout.package.name, symlinks=True, ignore=ignore)
    for dist_info in layout.dist_infos:
        shutil.copytree(dist_info, dest / dist_info.name, symlinks=True)
    log.info("backed up %s and %s to %s", layout.package, ", ".join(d.name for d in layout.dist_infos), dest)


def restore(layout: Layout, source: Path) -> None:
    """Put the backed-up package and dist-info back, removing whatever pip put there."""
    for current in [layout.package, *layout.site.glob("troopstack-*.dist-info")]:
        if current.is_dir() and not current.is_symlink():
            shutil.rmtree(current)
        elif current.exists() or current.is_symlink():
            current.unlink()
    shutil.copytree(source / layout.package.name, layout.package, symlinks=True)
    for dist_info in layout.dist_infos:
        shutil.copytree(source / dist_info.name, dist_info, symlinks=True)
    log.info("restored troop %s from %s", layout.version, source)


def pip_install(python: str, wheel: Path, cwd: Path) -> str | None:
    """Install the wheel into the scout's environment; the error when pip fails, else None."""
    argv = [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index"]
    argv += ["--disable-pip-version-check", "--no-input", str(wheel)]
    log.info("running %s", shlex.join(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode != 0:
        return _last_lines(done.stderr or done.stdout, 5) or f"exit status {done.returncode}"
    log.info("pip installed %s", wheel.name)
    return None


def _cleanup(scout: Scout, wheel: Path) -> None:
    shutil.rmtree(scout.backup_dir, ignore_errors=True)
    if wheel.parent == scout.lifecycle:  # the scout downloaded it there for this upgrade
        wheel.unlink(missing_ok=True)


# ---------------------------------------------------------------- markers and logs


def upgrade_markers(scout: Scout) -> list[Path]:
    """The markers of the scout.upgrade task(s) this run answers for."""
    found = []
    for path in sorted(scout.lifecycle.glob("*.json")):
        marker = read_json(path)
        if marker is None or marker.get("kind") != "scout.upgrade":
            continue
        if scout.task_id and marker.get("task_id") != scout.task_id:
            continue
        found.append(path)
    return found


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Temp file and rename: the scout never reads half a marker."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def update_markers(markers: list[Path], fields: dict[str, Any]) -> None:
    for path in markers:
        marker = read_json(path)
        if marker is not None:
            marker.update(fields)
            write_json(path, marker)


def fail(markers: list[Path], error: str) -> None:
    log.error("upgrade failed: %s", error)
    update_markers(markers, {"error": error})


def log_tail(scout: Scout, offset: int) -> str:
    """The last lines the new scout wrote: its journal under systemd, else DATA_DIR/scout.log."""
    if scout.systemd:
        argv = ["journalctl", "-u", SERVICE, "-n", str(TAIL_LINES), "--no-pager", "-o", "cat"]
        try:
            return _last_lines(subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout, TAIL_LINES)
        except (OSError, subprocess.SubprocessError):
            return "(no journal)"
    try:
        with open(scout.console_log, "rb") as f:
            f.seek(offset)
            text = f.read()[-16384:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return _last_lines(text, TAIL_LINES) or "(no output)"


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


ACTIONS: dict[str, Callable[..., None]] = {"stop": stop, "restart": restart, "upgrade": upgrade}

if __name__ == "__main__":
    sys.exit(main())
