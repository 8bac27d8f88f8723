"""The plugin index: pull the plugin repository with git, store each valid file as a blob,
and answer which version a scout should have (docs/plugins.md).

The repository is untrusted input: git runs from an argv list (never a shell) with prompts
off and a deadline; the walk never follows a symlink, reads only regular files one folder
deep, and refuses any path that resolves outside the checkout. A failed pull changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import shutil
import signal
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from troop.errors import TroopError
from troop.filemanager.blobstore import BlobInfo, TooLarge
from troop.general.files import FileService
from troop.general.plugin_names import BadPluginName, PluginName, newest, normalize_os, parse_plugin_file, version_key
from troop.general.settings import GeneralSettings
from troop.store import Store

log = logging.getLogger("troop.general.plugins")

INDEX_KEY = "plugin_index"  # general_state key of the saved index (JSON)
GIT_TIMEOUT = 120.0  # seconds per git command: a hung server must not hold a pull forever
READ_CHUNK = 1024 * 1024
DEFAULT_MAX_PLUGIN_SIZE = 256 * 1024 * 1024
BUILTIN = "scout_manager"
BUILTIN_OSES = ("linux", "darwin", "freebsd")  # one pure-Python zipapp runs on all of them
BUILDER_MODULE = "troop.scout_manager.build"
STDERR_LINES = 3  # how much of git's complaint reaches the operator
# Inherited, these would point git at some other repository than the checkout (a General started
# from a git hook has GIT_DIR set); the rest of the environment (GIT_SSH_COMMAND, proxies) is kept.
REPO_ENV = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_NAMESPACE"}

VersionId = tuple[str, str, tuple[int, ...]]  # (name, os, version_key): one file each


class PluginError(TroopError):
    """A pull failed; the previous index is still in force."""


@dataclass(frozen=True)
class PluginEntry:
    name: str
    os: str
    version: str
    sha256: str
    size: int
    file: str

    @classmethod
    def from_json(cls, raw: Any) -> PluginEntry:
        """ValueError, KeyError or TypeError if `raw` is not an entry this code wrote."""
        text = {key: str(raw[key]) for key in ("name", "os", "version", "sha256", "file")}
        e = cls(text["name"], text["os"], text["version"], text["sha256"], int(raw["size"]), text["file"])
        version_key(e.version)  # a malformed version would break every later comparison
        return e

    @property
    def id(self) -> VersionId:
        return (self.name, self.os, version_key(self.version))


@dataclass
class PullReport:
    entries: list[PluginEntry]
    errors: list[str]  # "folder/file: the rule it breaks"
    commit: str  # "" when no repository is configured
    pulled_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class PluginIndex:
    """Every plugin file the General can hand out; `choose` picks one for a scout."""

    def __init__(self, settings: GeneralSettings, store: Store, files: FileService) -> None:
        self.settings = settings
        self.store = store
        self.files = files
        self.errors: list[str] = []
        self.commit = ""
        self.pulled_at: datetime | None = None
        self.git_timeout = GIT_TIMEOUT
        self._entries: list[PluginEntry] = []
        self._by_name_os: dict[tuple[str, str], list[PluginEntry]] = {}
        self._lock = asyncio.Lock()  # one pull at a time: they share the checkout directory
        self.on_pulled: Callable[[], None] | None = None  # a cluster tells the other Generals

    @property
    def entries(self) -> list[PluginEntry]:
        return self._entries

    @entries.setter
    def entries(self, entries: list[PluginEntry]) -> None:
        # choose() runs for every scout after a pull: group once, not per call.
        self._entries = sorted(entries, key=_sort_key)
        self._by_name_os = {}
        for e in self._entries:
            self._by_name_os.setdefault((e.name, e.os), []).append(e)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    @property
    def max_size(self) -> int:
        return int(getattr(self.settings, "max_plugin_size", DEFAULT_MAX_PLUGIN_SIZE))

    def choose(self, name: str, os: str, pin: str | None) -> PluginEntry | None:
        """The pinned version of `name` for `os` (compared numerically), else its newest; None if none."""
        return newest(self._by_name_os.get((name, normalize_os(os)), []), os, pin)

    def shas(self) -> set[str]:
        """Blobs the index refers to: the blob collector must keep them."""
        return {e.sha256 for e in self._entries}

    def to_json(self) -> dict[str, Any]:
        return _document(self._entries, self.errors, self.commit, self.pulled_at)

    async def load(self) -> None:
        """Take the index saved by the last pull (of any General), plus this build's scout_manager."""
        async with self._lock:
            raw = await self.store.get_state(INDEX_KEY)
            entries: list[PluginEntry] = []
            errors: list[str] = []
            if raw is not None:
                try:
                    entries, errors = self._restore(json.loads(raw))
                except (ValueError, KeyError, TypeError) as exc:
                    # A damaged row must not stop the General: start empty; the next pull rewrites it.
                    log.warning("ignored the saved plugin index: %s", exc)
            await self._add_builtin(entries, errors)
            self.entries, self.errors = entries, errors

    def _restore(self, doc: Any) -> tuple[list[PluginEntry], list[str]]:
        entries = [PluginEntry.from_json(e) for e in doc["plugins"]]
        errors = [str(e) for e in doc.get("errors", [])]
        pulled = doc.get("pulled_at")
        self.pulled_at = datetime.fromisoformat(pulled) if pulled else None
        self.commit = str(doc.get("commit", ""))
        return entries, errors

    async def pull(self) -> PullReport:
        """Fetch the repository, index its valid files, save the index. PluginError if that fails."""
        async with self._lock:
            url = str(getattr(self.settings, "plugin_repo", "") or "")
            entries: list[PluginEntry] = []
            errors: list[str] = []
            commit = ""
            if url:
                checkout = await self._checkout(url)
                commit = await self._git(url, "-C", str(checkout), "rev-parse", "HEAD")
                found, errors = await asyncio.to_thread(_scan, checkout, self.max_size)
                entries = await self._store_all(found, errors)
            await self._add_builtin(entries, errors)
            report = PullReport(sorted(entries, key=_sort_key), errors, commit)
            doc = _document(report.entries, errors, commit, report.pulled_at)
            try:
                await self.store.set_state(INDEX_KEY, json.dumps(doc).encode())
            except Exception as exc:
                # Whatever the database said, the pull did not take: keep serving the old index.
                raise PluginError(f"cannot save the plugin index: {exc}") from exc
            self.entries, self.errors, self.commit, self.pulled_at = entries, errors, commit, report.pulled_at
        fields = {"commit": commit, "plugins": len(entries), "errors": len(errors)}
        log.info("plugins pulled", extra={"fields": fields})
        if self.on_pulled is not None:
            self.on_pulled()
        return report

    async def _checkout(self, url: str) -> Path:
        """An up-to-date shallow checkout of `url` in DATA_DIR/plugin-repo."""
        if url.startswith("-"):
            raise PluginError(f"refused plugin_repo {url!r}: it starts with '-', which git would take for an option")
        if any(ord(c) < 32 or ord(c) == 127 for c in url):
            raise PluginError("refused plugin_repo: it contains control characters")
        dest = self.data_dir / "plugin-repo"
        if await self._same_origin(dest, url):
            # HEAD, not the clone's branch: when the remote's default branch moves, the index follows.
            await self._git(url, "-C", str(dest), "fetch", "--depth", "1", "--quiet", "origin", "HEAD")
            await self._git(url, "-C", str(dest), "reset", "--hard", "--quiet", "FETCH_HEAD")
            # Nothing should write into the checkout; if something did, it is not the repository.
            await self._git(url, "-C", str(dest), "clean", "-ffdxq")
            return dest
        # Clone beside it and swap only once the clone is whole: a failed clone leaves no half repo.
        partial = self.data_dir / "plugin-repo.partial"
        await asyncio.to_thread(shutil.rmtree, partial, ignore_errors=True)
        await self._git(url, "clone", "--depth", "1", "--quiet", "--", url, str(partial))
        await asyncio.to_thread(_replace_tree, partial, dest)
        return dest

    async def _same_origin(self, dest: Path, url: str) -> bool:
        # Without its own .git, `git -C dest` would act on whatever repository encloses it.
        if not await asyncio.to_thread((dest / ".git").is_dir):
            return False
        try:
            return await self._git(url, "-C", str(dest), "config", "--get", "remote.origin.url") == url
        except PluginError:
            return False  # not a usable clone: clone afresh

    async def _git(self, url: str, *args: str) -> str:
        """Run git; its stdout, or PluginError naming the URL and the end of git's stderr."""
        env = {
            **{k: v for k, v in os.environ.items() if k not in REPO_ENV},
            "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
            "GIT_ASKPASS": "true",
            "GIT_CEILING_DIRECTORIES": str(self.data_dir.resolve()),  # never reach an enclosing repo
        }
        # ext:: URLs run commands: git refuses them by default, and no user config may change that.
        argv = ["git", "-c", "protocol.ext.allow=never", *args]
        failed = f"git clone of {_redact(url, url)} failed"
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=os.name == "posix",  # its own group, so a kill reaches git's helpers
            )
        except OSError as exc:
            raise PluginError(f"{failed}: cannot run git: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.git_timeout)
        except BaseException as exc:
            await _kill(proc)
            if isinstance(exc, TimeoutError):
                raise PluginError(f"{failed}: no answer within {self.git_timeout:g} s") from None
            raise
        if proc.returncode != 0:
            raise PluginError(f"{failed}: {_tail(err, url)}")
        return out.decode(errors="replace").strip()

    async def _store_all(self, found: list[_Candidate], errors: list[str]) -> list[PluginEntry]:
        entries = []
        for c in found:
            info = await self._store_file(c.path, c.rel, errors)
            if info is not None:
                p = c.parsed
                entries.append(PluginEntry(p.name, p.os, p.version, info.sha256, info.size, c.path.name))
        return entries

    async def _store_file(self, path: Path, rel: str, errors: list[str]) -> BlobInfo | None:
        """Stream one file into the FileManager. A problem of the file is reported in `errors`;
        a failing FileManager raises PluginError, since every later file would fail too."""
        try:
            fh = await asyncio.to_thread(_open_regular, path)
        except OSError as exc:
            errors.append(f"{rel}: cannot read: {exc.strerror or exc}")
            return None
        try:
            return await self.files.upload(_read_chunks(fh, self.max_size), None)
        except _Refused as exc:
            errors.append(f"{rel}: {exc}")
        except TooLarge as exc:
            errors.append(f"{rel}: too large: {exc}")
        except Exception as exc:
            raise PluginError(f"cannot store {rel} in the FileManager: {exc}") from exc
        finally:
            fh.close()  # a buffered file's close waits for a read still running in its thread
        return None

    async def _add_builtin(self, entries: list[PluginEntry], errors: list[str]) -> None:
        """Add this source tree's scout_manager for each OS whose index lacks its version."""
        where = f"{BUILTIN} (built-in)"
        try:
            path = await asyncio.to_thread(_build_builtin, self.data_dir / "builtin-plugins")
            if path is None:
                return
            parsed = parse_plugin_file(path.name)
        except Exception as exc:
            # A broken build must not keep the repository's plugins out of the index.
            log.exception("cannot build the built-in scout_manager")
            errors.append(f"{where}: build failed: {exc}")
            return
        if parsed.name != BUILTIN or parsed.os != "linux":
            errors.append(f"{where}: the build made {path.name}, not {BUILTIN}-linux-vX.Y.Z")
            return
        info = await self._store_file(path, f"{where} {path.name}", errors)
        if info is None:
            return
        have = {e.id for e in entries}
        for os_name in BUILTIN_OSES:
            file = f"{BUILTIN}-{os_name}-v{parsed.version}"
            entry = PluginEntry(BUILTIN, os_name, parsed.version, info.sha256, info.size, file)
            if entry.id not in have:  # the repository's own build of this version wins
                entries.append(entry)


# -- the walk (in a thread) -------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    path: Path
    rel: str  # "folder/file", as reports name it
    parsed: PluginName


class _Refused(Exception):
    """Why one repository file is not indexed."""


def _scan(root: Path, max_size: int) -> tuple[list[_Candidate], list[str]]:
    """The files worth storing, and a report line for each entry that breaks a rule."""
    root = root.resolve()
    found: list[_Candidate] = []
    errors: list[str] = []
    try:
        top_level = _listing(root)
    except OSError as exc:
        raise PluginError(f"cannot read the checkout {root}: {exc}") from exc
    for top in top_level:
        if top.is_symlink():
            errors.append(f"{top.name}: symlink refused (not followed)")
        elif top.is_dir(follow_symlinks=False) and not Path(top.path).resolve().is_relative_to(root):
            errors.append(f"{top.name}: resolves outside the repository")
        elif top.is_dir(follow_symlinks=False):
            _scan_folder(root, top, max_size, found, errors)
        # Files at the top (README, LICENSE) belong to the repository, not to a plugin.
    seen: dict[VersionId, str] = {}
    unique = []
    for c in found:
        key: VersionId = (c.parsed.name, c.parsed.os, version_key(c.parsed.version))
        if key in seen:
            errors.append(f"{c.rel}: same plugin, OS and version as {seen[key]}")
        else:
            seen[key] = c.rel
            unique.append(c)
    return unique, errors


def _scan_folder(
    root: Path, folder: os.DirEntry[str], max_size: int, found: list[_Candidate], errors: list[str]
) -> None:
    try:
        listing = _listing(Path(folder.path))
    except OSError as exc:
        errors.append(f"{folder.name}: cannot list: {exc.strerror or exc}")
        return
    for entry in listing:
        rel = f"{folder.name}/{entry.name}"
        try:
            found.append(_Candidate(Path(entry.path), rel, _check(root, folder.name, entry, max_size)))
        except _Refused as exc:
            errors.append(f"{rel}: {exc}")
        except OSError as exc:
            errors.append(f"{rel}: cannot read: {exc.strerror or exc}")


def _check(root: Path, folder: str, entry: os.DirEntry[str], max_size: int) -> PluginName:
    """The parsed name of a file that keeps every rule; else _Refused naming the first it breaks."""
    if entry.is_symlink():
        raise _Refused("symlink refused (not followed)")
    if entry.is_dir(follow_symlinks=False):
        raise _Refused("folder refused (plugin files sit directly in their plugin's folder)")
    if not entry.is_file(follow_symlinks=False):
        raise _Refused("not a regular file")
    if not Path(entry.path).resolve().is_relative_to(root):
        raise _Refused("resolves outside the repository")
    try:
        parsed = parse_plugin_file(entry.name)
    except BadPluginName as exc:
        raise _Refused(f"bad name: {exc.reason}") from None
    if parsed.name != folder:
        raise _Refused(f"plugin name {parsed.name!r} differs from its folder {folder!r}")
    size = entry.stat(follow_symlinks=False).st_size
    if size > max_size:
        raise _Refused(f"{size} bytes is over max_plugin_size ({max_size} bytes)")
    return parsed


def _listing(path: Path) -> list[os.DirEntry[str]]:
    """Entries in name order, for stable reports; dot-entries (.git, .gitkeep) are not plugins."""
    with os.scandir(path) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _open_regular(path: Path) -> BinaryIO:
    # O_NOFOLLOW: the walk saw a regular file, but one swapped for a symlink since is not opened.
    # O_NONBLOCK: a FIFO swapped in would otherwise block this thread until a writer appears.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


async def _read_chunks(fh: BinaryIO, max_size: int) -> AsyncIterator[bytes]:
    total = 0
    while True:
        try:
            chunk = await asyncio.to_thread(fh.read, READ_CHUNK)
        except OSError as exc:
            # Told apart from the FileManager's own OSErrors: this one is the file's problem.
            raise _Refused(f"cannot read: {exc.strerror or exc}") from exc
        if not chunk:
            return
        total += len(chunk)
        if total > max_size:  # checked while reading too: the file may have grown since the walk
            raise TooLarge(total, max_size)
        yield chunk


def _build_builtin(out_dir: Path) -> Path | None:
    """Build scout_manager with troop.scout_manager.build; None (logged) where that is absent."""
    try:
        # By name, at each call: the builder lives outside `general`, and a General may lack it.
        build = importlib.import_module(BUILDER_MODULE).build_zipapp
    except (ImportError, AttributeError) as exc:
        log.info("no built-in scout_manager: %s", exc)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    return Path(build(out_dir))


def _document(entries: list[PluginEntry], errors: list[str], commit: str, pulled_at: datetime | None) -> dict[str, Any]:
    return {
        "plugins": [asdict(e) for e in sorted(entries, key=_sort_key)],
        "errors": list(errors),
        "commit": commit,
        "pulled_at": pulled_at.isoformat() if pulled_at else None,
    }


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    await proc.wait()


def _replace_tree(new: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    new.rename(dest)


def _tail(err: bytes, url: str) -> str:
    """The last lines git wrote to stderr, on one line, with the URL's password (if any) masked."""
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    return _redact("; ".join(lines[-STDERR_LINES:]) or "no message from git", url)[-1000:]


def _redact(text: str, url: str) -> str:
    """`text` without the user:token of https://user:token@host/... URLs."""
    _, sep, rest = url.partition("://")
    userinfo = rest.split("/", 1)[0].rpartition("@")[0] if sep else ""
    return text.replace(userinfo + "@", "***@") if userinfo else text


def _sort_key(e: PluginEntry) -> tuple[str, str, tuple[int, ...], str]:
    return (e.name, e.os, version_key(e.version), e.version)
