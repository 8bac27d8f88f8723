"""Everything the scout does differently on Linux, Windows and other systems.

The rest of the scout calls only these functions, so it has no POSIX-only (or Windows-only)
call of its own. Functions whose behaviour differs take ``os_name`` ("linux", "windows",
"darwin", ...; the running OS when None), so the Windows branches can be unit-tested on a
Linux host, and the other way round.

Process trees: a command starts in a new session (POSIX) or a new process group (Windows),
so :func:`kill_tree` can kill the command together with everything it started. A child that
deliberately leaves that group (``setsid``, a daemon's double fork, ``start /b`` on Windows
when taskkill cannot see it) survives, as daemons are meant to.
"""

from __future__ import annotations

import asyncio
import locale
import logging
import ntpath
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# subprocess.CREATE_NEW_PROCESS_GROUP exists only on Windows builds of Python.
CREATE_NEW_PROCESS_GROUP = 0x00000200

POSIX_DATA_DIR = "/var/lib/troop-scout"
TASKKILL_TIMEOUT = 10.0  # seconds; taskkill of a huge tree is slow, but must not hang a task

_P = TypeVar("_P", bound=asyncio.SubprocessProtocol)


def os_from_sys_platform(value: str) -> str:
    """Map a ``sys.platform`` value to the OS name used in host facts and targeting."""
    if value in ("win32", "cygwin", "msys"):
        return "windows"
    # "linux2", "freebsd14", "sunos5": the trailing digits are a kernel release, not an OS.
    return re.sub(r"\d+$", "", value.lower()) or value.lower()


def current_os() -> str:
    """The running OS, lowercase: "linux", "windows", "darwin", "freebsd", ..."""
    return os_from_sys_platform(sys.platform)


def is_windows(os_name: str | None = None) -> bool:
    return (os_name or current_os()) == "windows"


def shell_argv(command: str, os_name: str | None = None) -> list[str]:
    """The argv that runs ``command`` through the host's shell.

    On Windows this is the logical argv; :func:`spawn` hands the command to CreateProcess
    itself, because one argv element cannot carry a cmd.exe command line intact.
    """
    if is_windows(os_name):
        # /d: skip AutoRun registry commands; /s: strip exactly one pair of outer quotes.
        return [os.environ.get("COMSPEC", "cmd.exe"), "/d", "/s", "/c", command]
    return ["/bin/sh", "-c", command]


def popen_kwargs(os_name: str | None = None) -> dict[str, Any]:
    """Extra process-creation arguments that put the child in a group of its own."""
    if is_windows(os_name):
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def merge_env(extra: Mapping[str, str], os_name: str | None = None) -> dict[str, str]:
    """The scout's environment with ``extra`` laid over it."""
    env = dict(os.environ)
    if is_windows(os_name):
        # Windows names are case-insensitive: "Path" from a task must replace "PATH",
        # not sit beside it and leave the child to pick one of the two.
        overridden = {name.upper() for name in extra}
        env = {k: v for k, v in env.items() if k.upper() not in overridden}
    env.update(extra)
    return env


async def spawn(
    protocol_factory: Callable[[], _P],
    argv: Sequence[str] = (),
    *,
    shell: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    os_name: str | None = None,
) -> tuple[asyncio.SubprocessTransport, _P]:
    """Start ``argv`` (or the ``shell`` command) in a new process group, stdin from devnull.

    Raises OSError/ValueError as subprocess.Popen does (missing program, bad cwd, ...).
    """
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "env": None if env is None else dict(env),
        "cwd": cwd,
        **popen_kwargs(os_name),
    }
    if shell is not None and is_windows(os_name):
        # subprocess.list2cmdline would escape the command's own quotes with backslashes,
        # which cmd.exe does not understand; shell mode builds `%COMSPEC% /c "command"`,
        # which cmd.exe parses as the user wrote it.
        return await loop.subprocess_shell(protocol_factory, shell, **kwargs)
    args = shell_argv(shell, os_name) if shell is not None else list(argv)
    return await loop.subprocess_exec(protocol_factory, *args, **kwargs)


def kill_tree_argv(pid: int) -> list[str]:
    """The Windows command that kills ``pid`` and all its descendants."""
    return ["taskkill", "/T", "/F", "/PID", str(pid)]


async def kill_tree(
    proc: asyncio.subprocess.Process | asyncio.SubprocessTransport, os_name: str | None = None
) -> None:
    """Kill a process started by :func:`spawn` (or with :func:`popen_kwargs`) and its group.

    Never raises: a process that is already gone is what we wanted.
    """
    pid = proc.pid if isinstance(proc, asyncio.subprocess.Process) else proc.get_pid()
    if not is_windows(os_name):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    await _taskkill(pid)
    try:
        proc.kill()  # taskkill may have failed; at least the main process must go
    except (ProcessLookupError, OSError):
        pass


async def _taskkill(pid: int) -> None:
    try:
        killer = await asyncio.create_subprocess_exec(
            *kill_tree_argv(pid),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        log.warning("taskkill for pid %d could not start: %s", pid, exc)
        return
    try:
        await asyncio.wait_for(killer.wait(), TASKKILL_TIMEOUT)
    except TimeoutError:
        log.warning("taskkill for pid %d did not finish in %gs", pid, TASKKILL_TIMEOUT)
        killer.kill()


def decode_output(data: bytes, os_name: str | None = None, *, fallback: str | None = None) -> str:
    """Command output as text for a display; never raises.

    UTF-8 first. On Windows, output that is not UTF-8 is most likely in the local code page
    (GBK on a Chinese server, as the original Troop assumed), so that is tried before
    replacing undecodable bytes.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if is_windows(os_name):
        encoding = fallback or locale.getpreferredencoding(False)
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("utf-8", errors="replace")


def default_data_dir(os_name: str | None = None) -> str:
    if is_windows(os_name):
        return ntpath.join(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "troop-scout")
    return POSIX_DATA_DIR


def private_file_mode_ok(path: str | Path, os_name: str | None = None) -> bool:
    """True when no one but the owner can read or write ``path``; False if it is missing.

    Windows has no mode bits to check; files there rely on the ACL inherited from the data
    dir (ProgramData is not writable by users), so this returns True for any existing file.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if is_windows(os_name):
        return True
    return stat.S_IMODE(mode) & 0o077 == 0


def write_private_file(path: str | Path, data: bytes, os_name: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), readable by the owner only.

    A crash leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    # mkstemp creates the file with mode 0600 already, so no window where others can read it.
    import tempfile  # rarely needed: kept out of the scout's resident memory

    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not is_windows(os_name):
            os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    if not is_windows(os_name):
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; without it a power cut can bring the old file back.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
