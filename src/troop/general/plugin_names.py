"""Plugin file names: `NAME-OS-vX.Y.Z`, or `NAME-win-vX.Y.Z.exe` on Windows (docs/plugins.md).

Pure functions, no I/O. Names are parsed from the right, so a NAME may hold `_` and `-`:
the last `-vX.Y.Z` is the version, the `-OS` before it the OS, and the rest the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from troop.errors import TroopError

# What a file may say -> the OS as scouts report it in their facts.
OS_NAMES = {"linux": "linux", "win": "windows", "windows": "windows", "darwin": "darwin", "freebsd": "freebsd"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*", re.ASCII)
# [0-9], not \d: \d also matches non-ASCII digits, which int() would quietly accept.
VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*", re.ASCII)
EXE = ".exe"
MAX_NAME = 255  # longer cannot be a file name on the usual file systems anyway


class BadPluginName(TroopError):
    """A file name that breaks the naming rule; `reason` says which part."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PluginName:
    name: str
    os: str  # "linux", "windows", "darwin" or "freebsd"
    version: str  # without the leading v, e.g. "1.2.0"
    exe: bool


def parse_plugin_file(filename: str) -> PluginName:
    """Split a plugin file name into its parts; BadPluginName says what is wrong with it."""
    if not filename or len(filename) > MAX_NAME or "/" in filename or "\\" in filename:
        raise BadPluginName("not a plain file name")
    exe = filename.endswith(EXE)
    stem = filename[: -len(EXE)] if exe else filename
    rest, sep, version = stem.rpartition("-v")
    if not sep or not VERSION.fullmatch(version):
        raise BadPluginName(f"no -vX.Y.Z version at the end (expected NAME-OS-vX.Y.Z, got {filename!r})")
    name, sep, os_word = rest.rpartition("-")
    if not sep:
        raise BadPluginName(f"no -OS before the version (expected NAME-OS-vX.Y.Z, got {filename!r})")
    os_name = OS_NAMES.get(os_word)
    if os_name is None:
        raise BadPluginName(f"unknown OS {os_word!r} (one of: {', '.join(OS_NAMES)})")
    if not NAME.fullmatch(name):
        raise BadPluginName(f"bad plugin name {name!r} (letters, digits, _ . -; starting with a letter or digit)")
    if os_name == "windows" and not exe:
        raise BadPluginName("a Windows plugin must end in .exe")
    if os_name != "windows" and exe:
        raise BadPluginName(f"only Windows plugins end in .exe, not {os_name} ones")
    return PluginName(name=name, os=os_name, version=version, exe=exe)


def normalize_os(os_name: str) -> str:
    """`win` and `windows` are one OS; anything unknown is passed through (it matches nothing)."""
    return OS_NAMES.get(os_name.lower(), os_name.lower())


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key: "1.10.0" > "1.9.3". A leading v is allowed; ValueError if malformed."""
    bare = version[1:] if version.startswith("v") else version
    if not VERSION.fullmatch(bare):
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in bare.split("."))


class Versioned(Protocol):
    @property
    def os(self) -> str: ...

    @property
    def version(self) -> str: ...


V = TypeVar("V", bound=Versioned)


def newest(entries: Iterable[V], os: str, pin: str | None = None) -> V | None:
    """The entry for `os` with the highest version, or exactly the pinned one; None if there is none.

    Pins compare numerically, so "1.0", "v1.0" and "01.0" name the same version.
    """
    wanted = normalize_os(os)
    candidates = [e for e in entries if e.os == wanted]
    if pin is not None:
        try:
            key = version_key(pin)
        except ValueError:
            return None
        return next((e for e in candidates if version_key(e.version) == key), None)
    return max(candidates, key=lambda e: version_key(e.version), default=None)
