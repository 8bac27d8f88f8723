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

from troop.durable import fsync_dir

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


async def kill_tree(proc: asyncio.subprocess.Process | asyncio.SubprocessTransport, os_name: str | None = None) -> None:
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
        fsync_dir(path.parent)


# ---------------------------------------------------------------- files (file.push, .read, .ls)

WINDOWS_DRIVE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def read_flags(os_name: str | None = None) -> int:
    """os.open flags to read an existing file for a file task.

    POSIX: O_NOFOLLOW, so a symlink planted at the last component is refused (ELOOP), not
    followed; O_NONBLOCK, so opening a FIFO cannot hang the task waiting for a writer (it
    has no effect on regular files). Windows: O_BINARY, or the C runtime translates line
    ends.
    """
    if is_windows(os_name):
        return os.O_RDONLY | getattr(os, "O_BINARY", 0)
    return os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def create_flags(os_name: str | None = None) -> int:
    """os.open flags to create a fresh temp file: never an existing file, never via a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if is_windows(os_name):
        return flags | getattr(os, "O_BINARY", 0)
    return flags | getattr(os, "O_NOFOLLOW", 0)


def lookup_ids(owner: str | None, group: str | None, os_name: str | None = None) -> tuple[int, int]:
    """The uid and gid for a user and group name (or number); -1 for one not given.

    Raises LookupError naming what is unknown. Windows has no owner/group to set this way
    (files take the ACL of their directory), so asking for one there is an error, not a
    silent no-op.
    """
    if owner is None and group is None:
        return -1, -1
    if is_windows(os_name):
        raise LookupError("owner and group are not supported on Windows (files take their directory's ACL)")
    import grp  # POSIX-only modules: imported here so this module loads on Windows
    import pwd

    uid = -1 if owner is None else _posix_id(owner, "user", lambda n: pwd.getpwnam(n).pw_uid)
    gid = -1 if group is None else _posix_id(group, "group", lambda n: grp.getgrnam(n).gr_gid)
    return uid, gid


def _posix_id(name: str, what: str, by_name: Callable[[str], int]) -> int:
    try:
        return by_name(name)
    except KeyError:
        if name.isdigit():  # chown accepts ids that no account names, and so do we
            return int(name)
        raise LookupError(f"unknown {what} {name!r}") from None


def attributes_differ(st: os.stat_result, mode: int | None, uid: int, gid: int, os_name: str | None = None) -> bool:
    """True when a file's mode, owner or group differ from those asked for (-1/None: any)."""
    if is_windows(os_name):
        return False  # mode bits and owners are not ours to set there; see set_attributes
    return (
        (mode is not None and stat.S_IMODE(st.st_mode) != mode)
        or (uid != -1 and st.st_uid != uid)
        or (gid != -1 and st.st_gid != gid)
    )


def set_attributes(fd: int, mode: int | None, uid: int, gid: int, os_name: str | None = None) -> None:
    """Give an open file its owner and group (-1: unchanged), then its mode (None: unchanged).

    The owner goes first because chown clears the setuid and setgid bits on Linux, even
    for root. Windows: nothing to do; the file keeps the ACL it inherited.
    """
    if is_windows(os_name):
        return
    if uid != -1 or gid != -1:
        os.fchown(fd, uid, gid)
    if mode is not None:
        os.fchmod(fd, mode)


def hard_link(src: str, dst: str, os_name: str | None = None) -> None:
    """Link ``dst`` to the file ``src`` names itself: a symlink at ``src`` is linked, not followed."""
    if is_windows(os_name):
        os.link(src, dst)  # CreateHardLinkW links a reparse point itself; no flag to pass
    else:
        os.link(src, dst, follow_symlinks=False)


def fsync_directory(path: str | Path, os_name: str | None = None) -> None:
    """Make renames in ``path`` durable. Windows cannot open a directory to fsync it."""
    if not is_windows(os_name):
        fsync_dir(Path(path))


def real_path(path: str, os_name: str | None = None) -> str:
    """``path`` with its symlinks resolved, when it is a path of the running OS.

    A path of another OS flavour (a Windows path in a unit test on Linux) is returned as
    given: it names nothing on this host, and resolving it would only mangle it.
    """
    if (os_name or current_os()) != current_os():
        return path
    return os.path.realpath(path)


def drive_roots(os_name: str | None = None, probe: Callable[[str], bool] | None = None) -> list[str]:
    """The drive roots that exist, ``A:\\`` to ``Z:\\``, on Windows; ``["/"]`` elsewhere.

    ``probe(root)`` says whether a drive exists; by default the GetLogicalDrives bitmask,
    which, unlike a stat of each root, never waits on a disconnected network drive or an
    empty card reader.
    """
    if not is_windows(os_name):
        return ["/"]
    exists = probe or _logical_drive_probe()
    return [root for root in (f"{letter}:\\" for letter in WINDOWS_DRIVE_LETTERS) if exists(root)]


def _logical_drive_probe() -> Callable[[str], bool]:
    try:
        import ctypes

        mask = int(ctypes.windll.kernel32.GetLogicalDrives())  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        return os.path.isdir  # not on Windows after all, or a stripped-down runtime
    return lambda root: bool(mask >> WINDOWS_DRIVE_LETTERS.index(root[0].upper()) & 1)
