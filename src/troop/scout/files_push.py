"""The work of a ``file.push``, as blocking code for a worker thread.

Order matters, and is chosen so that a push either installs exactly the announced bytes or
changes nothing but the directories it was asked to create:

1. the destination is checked (path rules, the scout's own data), the owner and group are
   looked up: an unknown user fails before anything is downloaded;
2. a file already there with the same bytes is left alone (its mode and owner are fixed
   on the descriptor its bytes were hashed through);
3. the sealed stream is opened and hashed into a fresh 0600 temp file beside the
   destination, and refused unless its sha256 and size are exactly as announced;
4. owner, mode, fsync, an optional backup, then a rename over the destination. A rename
   replaces a symlink planted there; it never writes through it.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes

from troop.protocol.blobstream import CHUNK, StreamOpener
from troop.protocol.errors import SealError
from troop.scout import platform
from troop.scout.files_paths import FileTaskError, check_name, check_path, check_protected

if TYPE_CHECKING:
    from troop.scout.httpget import Response as HTTPResponse

DOWNLOAD_TIMEOUT = 30.0  # seconds per socket operation, not for the whole download
READ_SIZE = CHUNK + 20  # one sealed chunk with its length prefix per read
DEFAULT_MODE = 0o644
DIR_MODE = 0o755
MAX_ERROR_BODY = 4096
_TEMP_STEM = 200  # bytes of the destination's name kept in the temp name (names cap at 255)


@dataclass(frozen=True)
class PushArgs:
    sha256: str
    size: int
    url: str
    key: bytes
    dest: str
    name: str
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    makedirs: bool = False
    backup: bool = False
    force: bool = False


def run_push(req: PushArgs, protected: list[str], os_name: str | None, cancel: threading.Event) -> dict[str, Any]:
    """Install the file; the result's data, or FileTaskError (OSError for the unforeseen)."""
    target, directory = _target(req, protected, os_name)
    try:
        uid, gid = platform.lookup_ids(req.owner, req.group, os_name)
    except LookupError as exc:
        raise FileTaskError(str(exc), target) from None
    _ensure_dir(directory, req.makedirs, target)
    old = _old_file(target)
    if old is not None and not req.force:
        action = _keep_if_same(target, old, req, uid, gid, os_name)
        if action is not None:
            return _data(action, target, req, None)
    fd, tmp = _create_temp(directory, os.path.basename(target), os_name, target)
    try:
        _download(req, fd, cancel, target)
        finishing, fd = fd, -1  # _finish_temp closes it, whatever happens
        _finish_temp(finishing, req, uid, gid, old, os_name)
        backup = _install(tmp, target, req.backup and old is not None, os_name)
    except BaseException:
        if fd != -1:
            os.close(fd)
        _remove(tmp)
        raise
    platform.fsync_directory(directory, os_name)
    return _data("created" if old is None else "replaced", target, req, backup)


def _data(action: str, target: str, req: PushArgs, backup: str | None) -> dict[str, Any]:
    return {"action": action, "path": target, "sha256": req.sha256, "size": req.size, "backup": backup}


def _target(req: PushArgs, protected: list[str], os_name: str | None) -> tuple[str, str]:
    """The file to write and its directory. DEST/ or an existing directory means DEST/name."""
    dest = check_path(req.dest, os_name)
    separators = ("/", "\\") if platform.is_windows(os_name) else ("/",)
    # isdir follows a symlinked directory, as cp does: only the last component is ours to replace.
    if req.dest.endswith(separators) or os.path.isdir(dest):
        directory = dest
        target = os.path.join(dest, check_name(req.name, os_name))
    else:
        directory, target = os.path.dirname(dest), dest
    check_protected(target, protected, os_name)
    return target, directory


def _ensure_dir(directory: str, makedirs: bool, target: str) -> None:
    if os.path.isdir(directory):
        return
    if os.path.lexists(directory):
        raise FileTaskError(f"{directory} is not a directory", target)
    if not makedirs:
        raise FileTaskError(f"directory {directory} does not exist (use --makedirs)", target)
    try:
        os.makedirs(directory, DIR_MODE, exist_ok=True)  # 0755 less the umask, as mkdir -p
    except OSError as exc:
        raise FileTaskError(f"cannot create directory {directory}: {exc.strerror or exc}", target) from None


def _old_file(target: str) -> os.stat_result | None:
    """What is at the destination now (not followed); only a file or a symlink may be replaced."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise FileTaskError(f"{target} is a directory", target)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        # Renaming over a device node or a socket would break whatever uses it.
        raise FileTaskError(f"{target} exists and is not a regular file", target)
    return st


def _keep_if_same(
    target: str, old: os.stat_result, req: PushArgs, uid: int, gid: int, os_name: str | None
) -> str | None:
    """The action when ``target`` already holds the bytes ("unchanged" or "attributes"), else None."""
    if not stat.S_ISREG(old.st_mode) or old.st_size != req.size:
        return None
    try:
        fd = os.open(target, platform.read_flags(os_name))  # O_NOFOLLOW: hash the file, not a link
    except OSError:
        return None  # swapped for a symlink meanwhile, or unreadable: download and replace
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or _hash_fd(fd) != req.sha256:
            return None
        if not platform.attributes_differ(st, req.mode, uid, gid, os_name):
            return "unchanged"
        platform.set_attributes(fd, req.mode, uid, gid, os_name)
        return "attributes"
    finally:
        os.close(fd)


def _hash_fd(fd: int) -> str:
    digest = hashes.Hash(hashes.SHA256())
    while block := os.read(fd, 1024 * 1024):
        digest.update(block)
    return digest.finalize().hex()


def _create_temp(directory: str, base: str, os_name: str | None, target: str) -> tuple[int, str]:
    """A new 0600 file beside the destination (same file system, so the rename is atomic)."""
    stem = base.encode("utf-8", "surrogateescape")[:_TEMP_STEM].decode("utf-8", "ignore")
    for _ in range(16):
        tmp = os.path.join(directory, f".{stem}.troop-{os.urandom(4).hex()}.tmp")
        try:
            return os.open(tmp, platform.create_flags(os_name), 0o600), tmp
        except FileExistsError:
            continue  # 32 random bits met an existing name: draw again
        except OSError as exc:
            raise FileTaskError(f"cannot create a file in {directory}: {exc.strerror or exc}", target) from None
    raise FileTaskError(f"cannot create a temp file in {directory}", target)


def _download(req: PushArgs, fd: int, cancel: threading.Event, target: str) -> None:
    """GET the URL and write the verified plaintext to ``fd``; FileTaskError on any doubt."""
    from urllib.parse import urlsplit

    from troop.scout import httpget

    try:
        url = urlsplit(req.url)
        port = url.port or 80
    except ValueError as exc:
        raise FileTaskError(f"bad download URL: {exc}", target) from None
    if url.scheme != "http" or not url.hostname:
        # The bytes are sealed end to end, so plain HTTP loses nothing (and the scout has no TLS).
        raise FileTaskError(f"the download URL must be http://HOST/...: {req.url!r}", target)
    sock = None
    try:
        sock, response = httpget.get(
            url.hostname, port, (url.path or "/") + (f"?{url.query}" if url.query else ""), DOWNLOAD_TIMEOUT
        )
        if response.status != 200:  # redirects are not followed: anything but 200 fails
            raise FileTaskError(_refusal(response), target)
        _receive(response, fd, req, cancel, target)
    except OSError as exc:
        raise FileTaskError(f"download failed: {_describe(exc)}", target) from None
    finally:
        if sock is not None:
            sock.close()


def _refusal(response: HTTPResponse) -> str:
    """The FileManager's reason for a non-200 answer: its {"error": ...} body when it sent one."""
    import msgspec

    message = f"download refused: HTTP {response.status} {response.reason}"
    try:
        body = msgspec.json.decode(response.read(MAX_ERROR_BODY))
    except (msgspec.DecodeError, OSError, ValueError):
        return message
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"{message}: {body['error']}"
    return message


def _receive(response: HTTPResponse, fd: int, req: PushArgs, cancel: threading.Event, target: str) -> None:
    opener = StreamOpener(req.key)
    digest = hashes.Hash(hashes.SHA256())
    got = 0
    try:
        while block := response.read(READ_SIZE):
            if cancel.is_set():
                raise FileTaskError("cancelled", target)
            plain = opener.feed(block)
            got += len(plain)
            if got > req.size:  # stop at once: a wrong or hostile stream must not fill the disk
                raise FileTaskError(f"the download is over the announced {req.size} bytes", target)
            digest.update(plain)
            _write_all(fd, plain, target)
        opener.finish()
    except SealError as exc:
        raise FileTaskError(f"download refused: {exc} (tampered stream or wrong key)", target) from None
    actual = digest.finalize().hex()
    if actual != req.sha256 or got != req.size:
        sizes = "" if got == req.size else f" ({got} bytes, not {req.size})"
        raise FileTaskError(f"sha256 mismatch: expected {req.sha256}, got {actual}{sizes}", target)


def _write_all(fd: int, data: bytes, target: str) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:  # told apart from network errors: ENOSPC is the operator's to fix
        raise FileTaskError(f"cannot write beside {target}: {exc.strerror or exc}", target) from None


def _finish_temp(fd: int, req: PushArgs, uid: int, gid: int, old: os.stat_result | None, os_name: str | None) -> None:
    """Owner and mode on the temp file, then fsync and close (the fd is closed on return).

    What was not asked for comes from the file being replaced, as an edit in place would
    leave it: its mode, and its owner and group (best effort: only root may give a file
    away). A new file, or one replacing a symlink, gets 0644 and the scout's user.
    """
    try:
        mode = DEFAULT_MODE
        if old is not None and stat.S_ISREG(old.st_mode):
            mode = stat.S_IMODE(old.st_mode)
            keep_uid, keep_gid = (old.st_uid if uid == -1 else -1), (old.st_gid if gid == -1 else -1)
            try:
                platform.set_attributes(fd, None, keep_uid, keep_gid, os_name)
            except PermissionError:
                pass
        platform.set_attributes(fd, mode if req.mode is None else req.mode, uid, gid, os_name)
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: str, target: str, backup: bool, os_name: str | None) -> str | None:
    """Rename ``tmp`` over ``target``, keeping the old file as a backup if asked; its name."""
    saved = _backup(target, os_name) if backup else None
    try:
        os.replace(tmp, target)
    except OSError:
        if saved is not None and not os.path.lexists(target):
            try:
                os.replace(saved, target)  # the backup was a rename: put the old file back
            except OSError:
                pass
        raise
    return saved


def _backup(target: str, os_name: str | None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(100):
        saved = f"{target}.{stamp}.bak" if n == 0 else f"{target}.{stamp}.{n}.bak"
        if os.path.lexists(saved):
            continue  # two pushes in one second: keep both backups
        try:
            platform.hard_link(target, saved, os_name)  # the old file stays in place until the rename
        except FileExistsError:
            continue
        except OSError:
            os.rename(target, saved)  # no hard links here (FAT, some shares): move it aside instead
        return saved
    raise FileTaskError(f"too many backups of {target} in one second", target)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no data for {DOWNLOAD_TIMEOUT:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
