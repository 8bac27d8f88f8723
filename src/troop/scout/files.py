"""The scout's file tasks: ``file.push``, ``file.read`` and ``file.ls``.

Each public coroutine turns a Task's ``args`` into a Result and never raises, except
``asyncio.CancelledError`` when its task is cancelled. The blocking work (disk, socket)
runs in a worker thread, so the scout keeps serving its connection meanwhile; a cancelled
push tells its thread to stop, and the thread removes its temp file.

Args come from the network (sealed, but still input): each one is type-checked, and a
missing or wrongly typed one fails the task naming it. Every path goes through
:func:`check_path` and is refused inside the ``protected`` roots (the scout's data dir,
whose private key no file task may return or replace).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes

from troop.protocol.messages import Result
from troop.scout import platform
from troop.scout.files_paths import FileTaskError, PathError, check_path, check_protected
from troop.scout.files_push import PushArgs, run_push

__all__ = ["MAX_ENTRIES", "FileTaskError", "PathError", "check_path", "ls", "push", "read"]

log = logging.getLogger("troop.scout.files")

MAX_ENTRIES = 10_000  # entries a file.ls returns; the rest is flagged truncated
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MISSING = object()
_T = TypeVar("_T")

# ---------------------------------------------------------------- the task functions


async def push(task_id: str, args: dict[str, Any], *, protected: list[str], os_name: str | None = None) -> Result:
    """Download a blob from the FileManager and install it at ``args["dest"]``."""
    cancel = threading.Event()

    def work() -> dict[str, Any]:
        return run_push(_push_args(args), protected, os_name, cancel)

    return await _run(task_id, "push", args.get("dest"), work, cancel)


async def read(task_id: str, args: dict[str, Any], *, protected: list[str], os_name: str | None = None) -> Result:
    """Return a regular file's bytes, refusing one over ``args["max_bytes"]`` without reading it."""

    def work() -> dict[str, Any]:
        return read_file(_str(args, "path"), _int(args, "max_bytes"), protected, os_name)

    return await _run(task_id, "read", args.get("path"), work)


async def ls(task_id: str, args: dict[str, Any], *, protected: list[str], os_name: str | None = None) -> Result:
    """List a directory (or describe one file); an empty path on Windows lists the drives."""

    def work() -> dict[str, Any]:
        return list_path(_str(args, "path"), protected, os_name)

    return await _run(task_id, "ls", args.get("path"), work)


async def _run(
    task_id: str,
    what: str,
    path_arg: object,
    work: Callable[[], dict[str, Any]],
    cancel: threading.Event | None = None,
) -> Result:
    """Run ``work`` in a thread and make a Result of whatever it returns or raises."""
    start = time.monotonic()
    path = path_arg if isinstance(path_arg, str) else ""
    try:
        data = await asyncio.to_thread(work)
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.set()  # the thread goes on until its next chunk, then cleans up
        raise
    except FileTaskError as exc:
        return _failed(task_id, start, what, str(exc), exc.path or path)
    except OSError as exc:
        return _failed(task_id, start, what, _os_error(exc, path), path)
    except Exception as exc:  # a bug must cost one task, not the scout
        log.exception("file %s failed unexpectedly", what)
        return _failed(task_id, start, what, f"scout error: {exc}", path)
    log.info("file %s done", what, extra={"fields": {"task": task_id, "path": data.get("path")}})
    return Result(task_id=task_id, state="succeeded", data=data, duration=time.monotonic() - start)


def _failed(task_id: str, start: float, what: str, error: str, path: str) -> Result:
    log.warning("file %s failed: %s", what, error, extra={"fields": {"task": task_id, "path": path}})
    return Result(task_id=task_id, state="failed", error=error, data={"path": path}, duration=time.monotonic() - start)


def _os_error(exc: OSError, path: str) -> str:
    return f"{exc.filename or path}: {exc.strerror or exc}"


# ---------------------------------------------------------------- args


def _get(args: dict[str, Any], name: str, kind: type[_T], what: str, default: object = _MISSING) -> _T:
    if name not in args:
        if default is _MISSING:
            raise FileTaskError(f"missing argument {name!r}")
        return default  # type: ignore[return-value]
    value = args[name]
    if value is None and default is None:
        return value  # type: ignore[return-value]
    # bool is an int to isinstance, but True is no size and 1 is no flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FileTaskError(f"argument {name!r} must be {what}, not {type(value).__name__}")
    return value


def _str(args: dict[str, Any], name: str) -> str:
    return _get(args, name, str, "a string")


def _int(args: dict[str, Any], name: str) -> int:
    value = _get(args, name, int, "an integer")
    if value < 0:
        raise FileTaskError(f"argument {name!r} must not be negative")
    return value


def _push_args(args: dict[str, Any]) -> PushArgs:
    sha = _str(args, "sha256").lower()
    if not _SHA256.fullmatch(sha):
        raise FileTaskError("argument 'sha256' must be 64 hex digits")
    key = _get(args, "key", bytes, "bytes")
    if len(key) != 32:
        raise FileTaskError("argument 'key' must be 32 bytes")
    mode: int | None = _get(args, "mode", int, "an integer or null", None)
    if mode is not None and not 0 <= mode <= 0o7777:
        raise FileTaskError(f"argument 'mode' must be between 0 and 0o7777, not {mode:#o}")
    return PushArgs(
        sha256=sha,
        size=_int(args, "size"),
        url=_str(args, "url"),
        key=key,
        dest=_str(args, "dest"),
        name=_str(args, "name"),
        mode=mode,
        owner=_get(args, "owner", str, "a string or null", None),
        group=_get(args, "group", str, "a string or null", None),
        makedirs=_get(args, "makedirs", bool, "a boolean", False),
        backup=_get(args, "backup", bool, "a boolean", False),
        force=_get(args, "force", bool, "a boolean", False),
    )


# ---------------------------------------------------------------- file.read


def read_file(raw: str, max_bytes: int, protected: list[str], os_name: str | None = None) -> dict[str, Any]:
    path = check_path(raw, os_name)
    check_protected(path, protected, os_name)
    real = platform.real_path(path, os_name)
    _must_be_regular(os.stat(real), path)  # before open: opening a FIFO or device has effects
    # O_NOFOLLOW on the resolved path: a symlink swapped in since real_path is refused.
    fd = os.open(real, platform.read_flags(os_name))
    try:
        st = os.fstat(fd)
        _must_be_regular(st, path)
        if st.st_size > max_bytes:
            raise FileTaskError(f"file is {st.st_size} bytes, over the {max_bytes}-byte cap (--max-bytes)", path)
        content = _read_at_most(fd, max_bytes + 1)  # st_size may be 0 (/proc) or the file may grow
    finally:
        os.close(fd)
    if len(content) > max_bytes:
        raise FileTaskError(f"file grew over the {max_bytes}-byte cap (--max-bytes) while being read", path)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(content)
    return {"path": path, "size": len(content), "sha256": digest.finalize().hex(), "content": content}


def _must_be_regular(st: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise FileTaskError(f"{path} is a directory (use file ls)", path)
    if not stat.S_ISREG(st.st_mode):
        raise FileTaskError(f"{path} is not a regular file", path)


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0 and (block := os.read(fd, min(left, 1024 * 1024))):
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


# ---------------------------------------------------------------- file.ls


def list_path(raw: str, protected: list[str], os_name: str | None = None) -> dict[str, Any]:
    if not raw and platform.is_windows(os_name):
        # Drive roots are not stat'ed: a disconnected network drive could hang the task.
        drives = [_drive_entry(root) for root in platform.drive_roots(os_name)]
        return {"path": "", "entries": drives, "truncated": False}
    path = check_path(raw, os_name)
    check_protected(path, protected, os_name)
    real = platform.real_path(path, os_name)
    # The path itself is followed, as `ls DIR` follows a symlinked directory; entries are not.
    if stat.S_ISDIR(os.stat(real).st_mode):
        entries, truncated = _list_dir(real)
        return {"path": path, "entries": entries, "truncated": truncated}
    entry = _entry(os.path.basename(path), os.lstat(path))
    return {"path": path, "entries": [entry], "truncated": False}


def _list_dir(directory: str) -> tuple[list[dict[str, Any]], bool]:
    """The first MAX_ENTRIES entries by name, without holding every name of a huge directory."""
    with os.scandir(directory) as it:
        names = heapq.nsmallest(MAX_ENTRIES + 1, (entry.name for entry in it))
    entries = []
    for name in names[:MAX_ENTRIES]:
        try:
            st = os.lstat(os.path.join(directory, name))
        except FileNotFoundError:
            continue  # removed while we listed: it is simply not there
        entries.append(_entry(name, st))
    return entries, len(names) > MAX_ENTRIES


def _entry(name: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "name": _text(name),
        "type": _kind(st.st_mode),
        "size": st.st_size,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "mtime": st.st_mtime,
    }


def _drive_entry(root: str) -> dict[str, Any]:
    return {"name": root, "type": "dir", "size": 0, "mode": "0777", "mtime": 0.0}


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _text(name: str) -> str:
    """A name the Result can carry: POSIX names need not be UTF-8, msgpack strings must be."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name
