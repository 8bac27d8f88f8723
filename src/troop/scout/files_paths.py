"""Which paths a file task may touch: absolute, plain, and outside the scout's own data.

The rules are string rules per OS flavour (``os_name`` as in :mod:`troop.scout.platform`),
so the Windows ones are unit-tested on Linux. A path with ``..`` is refused rather than
normalised: it is a mistake or an attack, and guessing what it meant is how path checks
get bypassed. On Windows the forms that make one file answer to several names (trailing
dots and spaces, device names, ``\\\\?\\`` paths, alternate data streams) are refused too,
so that a name compared here is the name the file system will use.
"""

from __future__ import annotations

import ntpath
import posixpath
import re

from troop.errors import TroopError
from troop.scout import platform

# Reserved in every directory on Windows, with any extension ("nul.txt" is the null device).
WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in "123456789\u00b9\u00b2\u00b3"}
)
_WINDOWS_BAD_CHARS = re.compile(r'[<>"|?*\x00-\x1f]')
_DRIVE = re.compile(r"[A-Za-z]:")


class FileTaskError(TroopError):
    """A file task cannot go on; the message is the task's error, for the operator."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path  # the path the task was working on, when known


class PathError(FileTaskError):
    """A path a file task may not use."""


def check_path(path: str, os_name: str | None = None) -> str:
    """The normalised absolute form of ``path``, or PathError saying why it is refused."""
    if not path:
        raise PathError("path is empty")
    if "\0" in path:
        raise PathError(f"path contains a NUL byte: {path!r}")
    if platform.is_windows(os_name):
        return _check_windows(path)
    return _check_posix(path)


def _check_posix(path: str) -> str:
    if not path.startswith("/"):
        raise PathError(f"path must be absolute: {path!r}")
    if ".." in path.split("/"):
        raise PathError(f"path must not contain '..': {path!r}")
    # normpath keeps a leading "//" (POSIX leaves its meaning open); Linux reads it as "/".
    return "/" + posixpath.normpath(path).lstrip("/")


def _check_windows(path: str) -> str:
    unified = path.replace("/", "\\")
    if unified.startswith(("\\\\?\\", "\\\\.\\", "\\??\\")):
        # Device namespace paths skip Win32 normalisation, so no name check here would hold.
        raise PathError(f"device paths (\\\\?\\, \\\\.\\) are not allowed: {path!r}")
    if ".." in unified.split("\\"):
        raise PathError(f"path must not contain '..': {path!r}")
    if unified.startswith("\\\\"):
        server, _, rest = unified[2:].partition("\\")
        share, _, rest = rest.partition("\\")
        if not server or not share:
            raise PathError(f"a UNC path needs a server and a share (\\\\server\\share\\...): {path!r}")
        _check_windows_component(server, path)
        _check_windows_component(share, path)
        prefix = f"\\\\{server}\\{share}"
    else:
        drive, rest = unified[:2], unified[2:]
        if not _DRIVE.fullmatch(drive) or not rest.startswith("\\"):
            raise PathError(f"path must be absolute (C:\\... or \\\\server\\share\\...): {path!r}")
        prefix = drive.upper()
    parts = [part for part in rest.split("\\") if part not in ("", ".")]
    for part in parts:
        _check_windows_component(part, path)
    return prefix + "\\" + "\\".join(parts)


def _check_windows_component(part: str, path: str) -> None:
    if ":" in part:
        raise PathError(f"alternate data streams (name:stream) are not allowed: {path!r}")
    if _WINDOWS_BAD_CHARS.search(part):
        raise PathError(f"path has a character Windows does not allow in names: {path!r}")
    if part.rstrip(". ") != part:
        # Windows drops trailing dots and spaces, so "troop-scout." would reach "troop-scout".
        raise PathError(f"a name ending in a dot or a space is not allowed on Windows: {path!r}")
    if part.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_DEVICES:
        raise PathError(f"{part!r} is a Windows device name: {path!r}")


def check_name(name: str, os_name: str | None = None) -> str:
    """``name`` when it is a plain file name (no directory part, not "." or ".."), else PathError."""
    separators = "/\\" if platform.is_windows(os_name) else "/"
    if not name or name in (".", "..") or "\0" in name or any(sep in name for sep in separators):
        raise PathError(f"not a plain file name: {name!r}")
    if platform.is_windows(os_name):
        _check_windows_component(name, name)
    return name


def is_under(path: str, root: str, os_name: str | None = None) -> bool:
    """True when ``path`` is ``root`` or inside it (case-insensitively on Windows)."""
    flavour = ntpath if platform.is_windows(os_name) else posixpath
    sep = flavour.sep
    path, root = flavour.normcase(path), flavour.normcase(root).rstrip(sep)
    return path == root or path.startswith(root + sep)


def check_protected(path: str, protected: list[str], os_name: str | None = None) -> None:
    """PathError when ``path`` lies in one of the ``protected`` roots.

    Both the path as given and with its symlinks resolved are compared with both forms of
    each root, so neither a symlink to the data dir nor a symlinked data dir gets through.
    """
    candidates = {path, platform.real_path(path, os_name)}
    roots = {form for root in protected if root for form in (root, platform.real_path(root, os_name))}
    if any(is_under(candidate, root, os_name) for candidate in candidates for root in roots):
        raise PathError(f"{path} is in the scout's own data directory, which file tasks may not touch", path)
