"""The scout's plugins: what is installed, what is wanted, and the ``plugin.*`` tasks.

Layout under ``DATA_DIR/plugins`` (see docs/plugins.md)::

    installed.json      {name: {"version": "1.2.0", "sha256": "..."}}
    wants.json          ["disk_report", "backup:2.0.1"]   (added by `troop plugin update`)
    NAME/NAME[.exe]     the executable, mode 0755

Versions are kept without the ``v`` of the file names ("1.2.0"); lines for operators show
it ("v1.2.0"). A plugin is installed through :func:`troop.scout.files.push`, so it gets the
same checks as any pushed file: the sealed download, its sha256 and size, a temp file and a
rename. A failed download leaves the old version in place and installed.json untouched.

Task args come from the network (sealed, but still input): every one is type-checked and
every plugin name must match :data:`NAME_PATTERN`, which leaves no room for ``..``, ``/``
or a leading dot in the paths built from it.

This module is imported at the handshake (for the facts), so it imports little; the file
and download machinery is imported only when a plugin task runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from troop.protocol.messages import Command, Result
from troop.scout import platform
from troop.scout.runner import OutputCallback, run_command

log = logging.getLogger("troop.scout.plugins")

SCOUT_MANAGER = "scout_manager"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
VERSION_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
MAX_NAME = 128  # well under the 255-byte file name limit, with room for ".exe" and temp names
MAX_OUTPUT = 1024 * 1024  # per stream, as for cmd
INSTALLED = "installed.json"
WANTS = "wants.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class PluginArgError(ValueError):
    """A task argument (or a configured entry) that is missing, mistyped or malformed."""


# ---------------------------------------------------------------- names and versions


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a valid plugin name, else PluginArgError naming ``what``."""
    if not isinstance(name, str):
        raise PluginArgError(f"argument {what!r} must be a string, not {type(name).__name__}")
    if len(name) > MAX_NAME or not NAME_PATTERN.fullmatch(name):
        raise PluginArgError(f"argument {what!r}: {name!r} is not a plugin name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
    # "CON" or "nul.txt" is a device in every directory on Windows, never a file of ours.
    if platform.is_windows() and name.split(".")[0].upper() in _windows_devices():
        raise PluginArgError(f"argument {what!r}: {name!r} is a reserved name on Windows")
    return name


def _windows_devices() -> frozenset[str]:
    from troop.scout.files_paths import WINDOWS_DEVICES

    return WINDOWS_DEVICES


def normalize_version(version: object, what: str = "version") -> str:
    """The version without its ``v`` ("1.2.0" from "v1.2.0"); PluginArgError if it is not X.Y.Z."""
    if not isinstance(version, str):
        raise PluginArgError(f"argument {what!r} must be a string, not {type(version).__name__}")
    bare = version[1:] if version[:1] in ("v", "V") else version
    if len(bare) > 64 or not VERSION_PATTERN.fullmatch(bare):
        raise PluginArgError(f"argument {what!r}: {version!r} is not a version (X.Y.Z)")
    return bare


def parse_want(entry: object, what: str = "want") -> tuple[str, str | None]:
    """``name`` or ``name:version`` as (name, version or None)."""
    if not isinstance(entry, str):
        raise PluginArgError(f"argument {what!r} must be a string, not {type(entry).__name__}")
    name, sep, version = entry.partition(":")
    return check_name(name, what), (normalize_version(version, what) if sep else None)


def _want_text(name: str, version: str | None) -> str:
    return name if version is None else f"{name}:{version}"


def _show(version: str | None) -> str:
    return "(none)" if version is None else f"v{version}"


# ---------------------------------------------------------------- the store


class PluginStore:
    """``DATA_DIR/plugins``: installed.json, wants.json and the plugin executables.

    ``configured`` is the scout's ``plugins`` setting; a malformed entry there is logged and
    skipped rather than stopping the scout. ``lock`` serialises plugin.update tasks, which
    read, change and rewrite installed.json.
    """

    def __init__(self, root: Path, configured: list[str]) -> None:
        self.root = root
        self.configured = configured
        self.lock = asyncio.Lock()

    def path(self, name: str) -> Path:
        check_name(name)
        return self.root / name / (f"{name}.exe" if platform.is_windows() else name)

    def installed(self) -> dict[str, dict[str, str]]:
        raw = self._read(INSTALLED, {})
        found: dict[str, dict[str, str]] = {}
        if not isinstance(raw, dict):
            log.warning("ignored %s: not a JSON object", self.root / INSTALLED)
            return found
        for name, entry in raw.items():
            if not (NAME_PATTERN.fullmatch(str(name)) and isinstance(entry, dict)):
                continue
            version, sha = entry.get("version"), entry.get("sha256")
            if isinstance(version, str) and isinstance(sha, str):
                found[name] = {"version": version, "sha256": sha}
        return found

    def record(self, name: str, version: str, sha256: str) -> None:
        """Note ``name`` as installed at ``version`` (after its file is in place)."""
        installed = self.installed()
        installed[name] = {"version": version, "sha256": sha256}
        self._write(INSTALLED, dict(sorted(installed.items())))

    def wants(self) -> list[str]:
        """scout_manager first, then the configured entries, then the remembered ones.

        One entry per name, at the place it first appears; a later pin of the same name
        replaces an earlier entry (a remembered ``name:1.2.0`` beats a configured ``name``),
        a later bare name does not undo a pin.
        """
        merged: dict[str, str | None] = {SCOUT_MANAGER: None}
        for source, entries in (("plugins setting", self.configured), (WANTS, self._remembered())):
            for entry in entries:
                try:
                    name, version = parse_want(entry, "want")
                except PluginArgError as exc:
                    log.warning("ignored a wanted plugin in %s: %s", source, exc)
                    continue
                if version is not None or name not in merged:
                    merged[name] = version
        return [_want_text(name, version) for name, version in merged.items()]

    def remember(self, names: list[str]) -> None:
        """Add ``names`` (``name`` or ``name:version``) to wants.json; a name given again replaces its entry."""
        parsed = [parse_want(entry) for entry in names]  # all checked before anything is written
        if not parsed:
            return
        kept: dict[str, str | None] = {}
        for entry in self._remembered():
            try:
                name, version = parse_want(entry)
            except PluginArgError:
                continue
            kept[name] = version
        for name, version in parsed:
            kept.pop(name, None)  # re-added at the end: the newest request is the one that counts
            kept[name] = version
        self._write(WANTS, [_want_text(name, version) for name, version in kept.items()])

    def facts(self) -> tuple[list[str], list[str]]:
        """(installed as "name:version", wants) for the scout's facts."""
        installed = [f"{name}:{entry['version']}" for name, entry in sorted(self.installed().items())]
        return installed, self.wants()

    def _remembered(self) -> list[str]:
        raw = self._read(WANTS, [])
        if not isinstance(raw, list):
            log.warning("ignored %s: not a JSON list", self.root / WANTS)
            return []
        return [entry for entry in raw if isinstance(entry, str)]

    def _read(self, file: str, default: object) -> object:
        try:
            return msgspec.json.decode((self.root / file).read_bytes())
        except FileNotFoundError:
            return default
        except (OSError, msgspec.DecodeError) as exc:
            # A damaged file must not take the scout down: it reinstalls what is missing.
            log.warning("cannot read %s: %s", self.root / file, exc)
            return default

    def _write(self, file: str, value: object) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / file, value)


def write_json_atomic(path: Path, value: object) -> None:
    """Write ``value`` as JSON to ``path`` via a temp file and a rename: old or new, never torn."""
    data = msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"
    # Not tempfile: the scout keeps that module out of its memory. 32 random bits and
    # O_EXCL give a fresh name; the retry covers the unlikely clash.
    for _ in range(16):
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, platform.create_flags(), 0o644)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"cannot create a temp file beside {path}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    platform.fsync_directory(path.parent)


# ---------------------------------------------------------------- argument checks


def _arg(args: dict[str, Any], key: str, kind: type, what: str, default: object = ..., where: str = "") -> Any:
    """``args[key]`` if it is a ``kind``; ``where`` prefixes the name in errors ("plugins[0].")."""
    if key not in args:
        if default is ...:
            raise PluginArgError(f"missing argument '{where}{key}'")
        return default
    value = args[key]
    # bool is an int to isinstance, but True is no size and 1 is no flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PluginArgError(f"argument '{where}{key}' must be {what}, not {type(value).__name__}")
    return value


def _str_list(args: dict[str, Any], key: str, default: object = ...) -> list[str]:
    value: list[Any] = _arg(args, key, list, "a list of strings", default)
    for item in value:
        if not isinstance(item, str):
            raise PluginArgError(f"argument {key!r} must be a list of strings, not a list with {type(item).__name__}")
    return value


def _plugin_entry(entry: object, index: int) -> dict[str, Any]:
    """One element of ``plugins``, checked: name, version, sha256, size, url, key."""
    where = f"plugins[{index}]."
    if not isinstance(entry, dict):
        raise PluginArgError(f"argument 'plugins[{index}]' must be a map, not {type(entry).__name__}")
    name = check_name(_arg(entry, "name", str, "a string", where=where), f"{where}name")
    version = normalize_version(_arg(entry, "version", str, "a string", where=where), f"{where}version")
    sha = _arg(entry, "sha256", str, "a string", where=where).lower()
    if not _SHA256.fullmatch(sha):
        raise PluginArgError(f"argument '{where}sha256' must be 64 hex digits")
    size = _arg(entry, "size", int, "an integer", where=where)
    if size < 0:
        raise PluginArgError(f"argument '{where}size' must not be negative")
    url = _arg(entry, "url", str, "a string", where=where)
    key = _arg(entry, "key", bytes, "bytes", where=where)
    return {"name": name, "version": version, "sha256": sha, "size": size, "url": url, "key": key}


def _failed(task_id: str, start: float, error: str, **extra: Any) -> Result:
    log.warning("plugin task failed: %s", error, extra={"fields": {"task": task_id}})
    return Result(task_id=task_id, state="failed", error=error, duration=time.monotonic() - start, **extra)


# ---------------------------------------------------------------- plugin.update


async def update(task_id: str, args: dict[str, Any], store: PluginStore) -> Result:
    """Install the announced versions of ``args["plugins"]``; remember ``args["want"]``."""
    start = time.monotonic()
    try:
        raw = _arg(args, "plugins", list, "a list")
        entries = [_plugin_entry(entry, i) for i, entry in enumerate(raw)]
        want = _str_list(args, "want", [])
        for wanted in want:
            parse_want(wanted)
        force: bool = _arg(args, "force", bool, "a boolean", False)
    except PluginArgError as exc:
        return _failed(task_id, start, str(exc))
    lines: list[str] = []
    failures = 0
    async with store.lock:
        for entry in entries:
            line, ok = await _install(task_id, entry, store, force)
            lines.append(line)
            failures += not ok
        try:
            store.remember(want)
        except OSError as exc:
            lines.append(f"cannot remember {', '.join(want)}: {exc.strerror or exc}")
            failures += 1
        installed = {name: entry["version"] for name, entry in store.installed().items()}
    stdout = "".join(f"{line}\n" for line in lines).encode()
    data = {"changes": lines, "installed": installed}
    if failures:
        plural = "s" if failures > 1 else ""
        return _failed(task_id, start, f"{failures} plugin update{plural} failed", stdout=stdout, data=data)
    return Result(task_id=task_id, state="succeeded", stdout=stdout, data=data, duration=time.monotonic() - start)


async def _install(task_id: str, entry: dict[str, Any], store: PluginStore, force: bool) -> tuple[str, bool]:
    """Install one plugin; its change line and whether it went well."""
    from troop.scout import files  # the download machinery, only when a plugin is installed

    name, version = entry["name"], entry["version"]
    current = store.installed().get(name)
    old = current["version"] if current else None
    dest = store.path(name)
    # The record alone is not proof: a deleted executable is installed again.
    if current and current["sha256"] == entry["sha256"] and not force and dest.is_file():
        return f"{name}: {_show(old)} (unchanged)", True
    push_args = {
        "sha256": entry["sha256"],
        "size": entry["size"],
        "url": entry["url"],
        "key": entry["key"],
        "dest": str(dest),
        "name": dest.name,
        "mode": 0o755,
        "makedirs": True,
        "force": force,
    }
    # protected=[]: the plugin dir lies inside the scout's data dir, which file tasks may not touch.
    result = await files.push(task_id, push_args, protected=[])
    if result.state != "succeeded":
        return f"{name}: failed: {result.error}", False
    try:
        store.record(name, version, entry["sha256"])
    except OSError as exc:
        return f"{name}: failed: cannot record it in {INSTALLED}: {exc.strerror or exc}", False
    log.info("plugin %s installed", name, extra={"fields": {"task": task_id, "old": old, "new": version}})
    return f"{name}: {_show(old)} -> {_show(version)}", True


# ---------------------------------------------------------------- plugin.versions


async def versions(task_id: str, args: dict[str, Any], store: PluginStore) -> Result:
    """The installed version of ``args["name"]`` (None when it is not installed)."""
    start = time.monotonic()
    try:
        name = check_name(_arg(args, "name", str, "a string"))
    except PluginArgError as exc:
        return _failed(task_id, start, str(exc))
    entry = store.installed().get(name)
    version = entry["version"] if entry else None
    stdout = f"{_show(version)}\n" if version else "not installed\n"
    return Result(
        task_id=task_id,
        state="succeeded",
        stdout=stdout.encode(),
        data={"name": name, "version": version},
        duration=time.monotonic() - start,
    )


# ---------------------------------------------------------------- plugin.run


async def run(
    task_id: str,
    args: dict[str, Any],
    store: PluginStore,
    check_blacklist: Callable[[list[str]], str | None],
    timeout: float,
    on_output: OutputCallback | None = None,
) -> Result:
    """Run ``PLUGIN ACTION ARGS...`` (argv, no shell) as a ``cmd`` runs its command."""
    start = time.monotonic()
    try:
        name = check_name(_arg(args, "name", str, "a string"))
        action: str = _arg(args, "action", str, "a string")
        extra = _str_list(args, "args", [])
    except PluginArgError as exc:
        return _failed(task_id, start, str(exc))
    path = store.path(name)
    if name not in store.installed() or not path.is_file():
        hint = f"troop plugin update TARGET {name}"
        return _failed(task_id, start, f"plugin {name} is not installed on this scout ({hint})")
    argv = [str(path), action, *extra]
    entry = check_blacklist(argv)
    if entry is not None:
        return Result(
            task_id=task_id,
            state="refused",
            error=f"refused by the scout's blacklist (entry {entry!r})",
            duration=time.monotonic() - start,
        )
    # What a plugin may want to know about the scout that runs it (scout_manager status does).
    env = {"TROOP_SCOUT_PID": str(os.getpid()), "TROOP_PLUGIN_DIR": str(path.parent)}
    command = Command(argv=argv, env=env, max_output=MAX_OUTPUT)
    return await run_command(task_id, command, timeout, on_output=on_output)
