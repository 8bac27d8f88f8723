"""The scout's file tasks, on real files under tmp_path and a real HTTP server on a local port.

The server stands in for the FileManager's download face: it serves whatever sealed stream
(or refusal) a test puts at a URL path, and counts the requests it gets. The Windows branches
cannot run here (no Windows host); they are covered as pure functions in test_scout_paths.py,
and the drive listing below with a fake probe.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import http.server
import os
import pwd
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from troop.protocol import messages
from troop.protocol.blobstream import CHUNK, seal_all
from troop.scout import files, platform

pytestmark = pytest.mark.skipif(platform.is_windows(), reason="POSIX file semantics")

KEY = bytes(range(32))


class Route:
    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None, pause: float = 0.0) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.pause = pause  # seconds to wait after the first half of the body


class BlobServer:
    """A tiny threaded HTTP server: path -> Route; counts GETs."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path, Route(404, b'{"error": "no such blob"}'))
                self.send_response(route.status)
                for name, value in {"Content-Length": str(len(route.body)), **route.headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                half = len(route.body) // 2 if route.pause else len(route.body)
                self.wfile.write(route.body[:half])
                self.wfile.flush()
                time.sleep(route.pause)
                self.wfile.write(route.body[half:])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def blob(self, data: bytes, *, sealed: bytes | None = None, path: str = "/blob?sig=x") -> str:
        self.routes[path] = Route(200, seal_all(KEY, data) if sealed is None else sealed)
        return self.url(path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[BlobServer]:
    s = BlobServer()
    yield s
    s.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def push_args(url: str, data: bytes, dest: Path | str, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "sha256": sha(data),
        "size": len(data),
        "url": url,
        "key": KEY,
        "dest": str(dest),
        "name": "app.conf",
        "mode": None,
        "owner": None,
        "group": None,
        "makedirs": False,
        "backup": False,
        "force": False,
    }
    args.update(extra)
    return args


async def do_push(args: dict[str, Any], protected: list[str] | None = None) -> messages.Result:
    result = await files.push("t1", args, protected=protected or [])
    messages.encode(result)  # whatever comes back must travel to the General
    return result


def leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if ".troop-" in name]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---------------------------------------------------------------- push: the happy paths


async def test_push_creates_a_file(server: BlobServer, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 5)  # several sealed chunks
    dest = tmp_path / "app.bin"
    result = await do_push(push_args(server.blob(data), data, dest))
    assert result.state == "succeeded", result.error
    assert result.data == {
        "action": "created",
        "path": str(dest),
        "sha256": sha(data),
        "size": len(data),
        "backup": None,
    }
    assert dest.read_bytes() == data
    assert mode_of(dest) == 0o644
    assert leftovers(tmp_path) == []


async def test_push_an_empty_file(server: BlobServer, tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    result = await do_push(push_args(server.blob(b""), b"", dest, mode=0o600))
    assert result.state == "succeeded", result.error
    assert dest.read_bytes() == b"" and mode_of(dest) == 0o600


async def test_push_into_a_directory_uses_the_source_name(server: BlobServer, tmp_path: Path) -> None:
    data = b"listen 80;\n"
    (tmp_path / "conf").mkdir()
    for dest in (f"{tmp_path}/conf/", str(tmp_path / "conf")):  # trailing slash, or an existing dir
        result = await do_push(push_args(server.blob(data), data, dest, mode=0o640, force=True))
        assert result.state == "succeeded", result.error
        assert result.data["path"] == str(tmp_path / "conf" / "app.conf")
    assert (tmp_path / "conf" / "app.conf").read_bytes() == data
    assert mode_of(tmp_path / "conf" / "app.conf") == 0o640


async def test_push_replaces_and_keeps_the_old_mode(server: BlobServer, tmp_path: Path) -> None:
    dest = tmp_path / "run.sh"
    dest.write_bytes(b"old")
    dest.chmod(0o750)
    data = b"#!/bin/sh\necho new\n"
    result = await do_push(push_args(server.blob(data), data, dest))
    assert result.state == "succeeded", result.error
    assert result.data["action"] == "replaced" and result.data["backup"] is None
    assert dest.read_bytes() == data and mode_of(dest) == 0o750
    assert sorted(os.listdir(tmp_path)) == ["run.sh"]


async def test_push_with_backup_keeps_the_old_file(server: BlobServer, tmp_path: Path) -> None:
    dest = tmp_path / "app.conf"
    dest.write_bytes(b"old config")
    data = b"new config"
    before = time.gmtime()
    result = await do_push(push_args(server.blob(data), data, dest, backup=True))
    assert result.state == "succeeded", result.error
    backup = result.data["backup"]
    assert re.fullmatch(re.escape(str(dest)) + r"\.\d{8}T\d{6}Z\.bak", backup)
    assert time.strftime("%Y%m%dT", before) in backup
    assert Path(backup).read_bytes() == b"old config" and dest.read_bytes() == data
    # A second backup in the same second does not overwrite the first.
    again = await do_push(push_args(server.blob(b"newer"), b"newer", dest, backup=True))
    assert again.state == "succeeded", again.error
    assert again.data["backup"] != backup
    assert Path(again.data["backup"]).read_bytes() == data and Path(backup).read_bytes() == b"old config"


async def test_backup_of_a_new_file_is_none(server: BlobServer, tmp_path: Path) -> None:
    result = await do_push(push_args(server.blob(b"x"), b"x", tmp_path / "new", backup=True))
    assert result.data["action"] == "created" and result.data["backup"] is None


async def test_identical_file_is_not_downloaded(server: BlobServer, tmp_path: Path) -> None:
    data = b"same bytes\n"
    dest = tmp_path / "same"
    dest.write_bytes(data)
    dest.chmod(0o644)
    url = server.blob(data)
    result = await do_push(push_args(url, data, dest))
    assert result.state == "succeeded", result.error
    assert result.data["action"] == "unchanged"
    # Only the mode differs: fixed in place, still no download.
    result = await do_push(push_args(url, data, dest, mode=0o600))
    assert result.data["action"] == "attributes"
    assert mode_of(dest) == 0o600
    assert server.requests == []
    # --force downloads and replaces all the same.
    result = await do_push(push_args(url, data, dest, force=True))
    assert result.data["action"] == "replaced"
    assert len(server.requests) == 1


async def test_push_replaces_a_planted_symlink_not_its_target(server: BlobServer, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "shadow"
    victim.write_bytes(b"precious")
    (tmp_path / "www").mkdir()
    dest = tmp_path / "www" / "index.html"
    dest.symlink_to(victim)
    data = b"<h1>hello</h1>"
    result = await do_push(push_args(server.blob(data), data, dest))
    assert result.state == "succeeded", result.error
    assert result.data["action"] == "replaced"
    assert not dest.is_symlink() and stat.S_ISREG(os.lstat(dest).st_mode)
    assert dest.read_bytes() == data
    assert victim.read_bytes() == b"precious" and mode_of(victim) == 0o644


async def test_a_symlink_to_identical_bytes_is_not_unchanged(server: BlobServer, tmp_path: Path) -> None:
    # The hash is taken without following a link: a link is not "the same file".
    data = b"identical"
    target = tmp_path / "target"
    target.write_bytes(data)
    dest = tmp_path / "link"
    dest.symlink_to(target)
    result = await do_push(push_args(server.blob(data), data, dest, mode=0o600))
    assert result.data["action"] == "replaced"
    assert not dest.is_symlink()
    assert mode_of(target) == 0o644  # the mode went to the new file, not through the link


async def test_makedirs(server: BlobServer, tmp_path: Path) -> None:
    data = b"x"
    dest = tmp_path / "a" / "b" / "f"
    result = await do_push(push_args(server.blob(data), data, dest))
    assert result.state == "failed"
    assert result.error == f"directory {tmp_path}/a/b does not exist (use --makedirs)"
    assert result.data["path"] == str(dest)
    assert server.requests == []
    result = await do_push(push_args(server.blob(data), data, dest, makedirs=True))
    assert result.state == "succeeded", result.error
    assert dest.read_bytes() == data
    assert mode_of(tmp_path / "a" / "b") == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


async def test_owner_and_group(server: BlobServer, tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    my_group = grp.getgrgid(os.getgid()).gr_name
    data = b"owned"
    dest = tmp_path / "owned"
    result = await do_push(push_args(server.blob(data), data, dest, owner=me, group=my_group))
    assert result.state == "succeeded", result.error
    assert (os.stat(dest).st_uid, os.stat(dest).st_gid) == (os.getuid(), os.getgid())
    if os.getuid() != 0:
        return
    # As root, give it away for real: the identical file gets its owner fixed, not re-downloaded.
    nobody = pwd.getpwnam("nobody")
    result = await do_push(push_args(server.blob(data), data, dest, owner="nobody", group=str(nobody.pw_gid)))
    assert result.data["action"] == "attributes"
    assert (os.stat(dest).st_uid, os.stat(dest).st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert len(server.requests) == 1
    # Replaced without an owner asked for: the new file keeps the old one's owner.
    result = await do_push(push_args(server.blob(b"v2"), b"v2", dest))
    assert result.data["action"] == "replaced"
    assert os.stat(dest).st_uid == nobody.pw_uid


async def test_setuid_survives_the_chown(server: BlobServer, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to chown")
    dest = tmp_path / "tool"
    result = await do_push(push_args(server.blob(b"elf"), b"elf", dest, mode=0o4755, owner="nobody"))
    assert result.state == "succeeded", result.error
    assert mode_of(dest) == 0o4755


async def test_a_failure_after_the_download_installs_nothing(
    server: BlobServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fd: int, mode: int | None, uid: int, gid: int, os_name: str | None = None) -> None:
        raise PermissionError(1, "Operation not permitted")  # as fchown does for a non-root scout

    monkeypatch.setattr(platform, "set_attributes", refuse)
    dest = tmp_path / "f"
    result = await do_push(push_args(server.blob(b"x"), b"x", dest, mode=0o600))
    assert (result.state, result.error) == ("failed", f"{dest}: Operation not permitted")
    assert os.listdir(tmp_path) == []


async def test_unknown_owner_fails_before_downloading(server: BlobServer, tmp_path: Path) -> None:
    result = await do_push(push_args(server.blob(b"x"), b"x", tmp_path / "f", owner="no-such-user-troop"))
    assert result.state == "failed"
    assert result.error == "unknown user 'no-such-user-troop'"
    assert server.requests == [] and os.listdir(tmp_path) == []


# ---------------------------------------------------------------- push: refusals


async def test_wrong_bytes_are_refused(server: BlobServer, tmp_path: Path) -> None:
    dest = tmp_path / "f"
    dest.write_bytes(b"old, and it stays")
    data, evil = b"good bytes", b"evil bytes"
    result = await do_push(push_args(server.blob(evil), data, dest))
    assert result.state == "failed"
    assert result.error == f"sha256 mismatch: expected {sha(data)}, got {sha(evil)}"
    assert result.data["path"] == str(dest)
    assert dest.read_bytes() == b"old, and it stays"
    assert leftovers(tmp_path) == []


async def test_short_stream_is_a_mismatch(server: BlobServer, tmp_path: Path) -> None:
    data = b"0123456789"
    result = await do_push(push_args(server.blob(data[:4]), data, tmp_path / "f"))
    assert result.error == f"sha256 mismatch: expected {sha(data)}, got {sha(data[:4])} (4 bytes, not 10)"
    assert os.listdir(tmp_path) == []


async def test_download_over_the_size_stops(server: BlobServer, tmp_path: Path) -> None:
    data = b"small"
    result = await do_push(push_args(server.blob(os.urandom(2 * CHUNK)), data, tmp_path / "f"))
    assert result.state == "failed"
    assert result.error == "the download is over the announced 5 bytes"
    assert os.listdir(tmp_path) == []


async def test_refusal_names_the_status_and_the_reason(server: BlobServer, tmp_path: Path) -> None:
    server.routes["/expired"] = Route(403, msgspec.json.encode({"error": "expired URL"}))
    server.routes["/moved"] = Route(302, b"", {"Location": server.url("/blob")})
    server.routes["/broken"] = Route(500, b"<html>oops</html>")
    expected = {
        "/expired": "download refused: HTTP 403 Forbidden: expired URL",
        "/moved": "download refused: HTTP 302 Found",  # redirects are not followed
        "/broken": "download refused: HTTP 500 Internal Server Error",
    }
    for path, error in expected.items():
        result = await do_push(push_args(server.url(path), b"x", tmp_path / "f"))
        assert (result.state, result.error) == ("failed", error)
    assert "/blob" not in server.requests
    assert os.listdir(tmp_path) == []


async def test_truncated_streams_are_refused(server: BlobServer, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 1)
    sealed = seal_all(KEY, data)
    first_chunk = 4 + CHUNK + 16
    for cut in (sealed[:-7], sealed[:first_chunk]):  # mid-chunk, and a whole last chunk dropped
        result = await do_push(push_args(server.blob(data, sealed=cut), data, tmp_path / "f"))
        assert result.state == "failed"
        assert "the stream was cut short" in (result.error or "")
    assert os.listdir(tmp_path) == []


async def test_wrong_key_is_refused(server: BlobServer, tmp_path: Path) -> None:
    data = b"secret"
    url = server.blob(data, sealed=seal_all(os.urandom(32), data))
    result = await do_push(push_args(url, data, tmp_path / "f"))
    assert result.state == "failed"
    assert result.error == "download refused: message failed authentication (tampered stream or wrong key)"
    assert os.listdir(tmp_path) == []


async def test_unreachable_server_and_bad_urls(tmp_path: Path) -> None:
    listener = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = listener.server_address[1]
    listener.server_close()  # a port nobody listens on
    cases = {
        f"http://127.0.0.1:{port}/blob": "download failed: Connection refused",
        "https://files.example/blob": "the download URL must be http://HOST/...",
        "ftp://x/blob": "the download URL must be http://HOST/...",
        "http://127.0.0.1:99999/blob": "bad download URL",
    }
    for url, error in cases.items():
        result = await do_push(push_args(url, b"x", tmp_path / "f"))
        assert result.state == "failed"
        assert (result.error or "").startswith(error), result.error
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "dest", ["relative/f", "/tmp/../etc/passwd", "/tmp/a\0b", ""], ids=["relative", "dotdot", "nul", "empty"]
)
async def test_bad_destinations_are_refused(server: BlobServer, dest: str) -> None:
    result = await do_push(push_args(server.blob(b"x"), b"x", dest))
    assert result.state == "failed"
    assert result.data["path"] == dest
    assert server.requests == []


@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
async def test_bad_names_are_refused_for_a_directory(server: BlobServer, tmp_path: Path, name: str) -> None:
    result = await do_push(push_args(server.blob(b"x"), b"x", f"{tmp_path}/", name=name))
    assert result.state == "failed"
    assert "not a plain file name" in (result.error or "")
    assert os.listdir(tmp_path) == []


async def test_protected_dir_is_refused_for_push(server: BlobServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "scout"
    data_dir.mkdir()
    (data_dir / "scout.key").write_bytes(b"PRIVATE")
    (tmp_path / "alias").symlink_to(data_dir)
    for dest in (data_dir / "scout.key", tmp_path / "alias" / "scout.key", f"{data_dir}/"):
        result = await do_push(push_args(server.blob(b"x"), b"x", dest), protected=[str(data_dir)])
        assert result.state == "failed"
        assert "scout's own data directory" in (result.error or "")
    assert (data_dir / "scout.key").read_bytes() == b"PRIVATE"
    assert server.requests == []


async def test_a_directory_or_device_at_the_destination_is_not_replaced(server: BlobServer, tmp_path: Path) -> None:
    (tmp_path / "d" / "app.conf").mkdir(parents=True)
    result = await do_push(push_args(server.blob(b"x"), b"x", tmp_path / "d"))
    assert result.error == f"{tmp_path}/d/app.conf is a directory"
    (tmp_path / "file").write_bytes(b"")
    result = await do_push(push_args(server.blob(b"x"), b"x", f"{tmp_path}/file/", makedirs=True))
    assert result.error == f"{tmp_path}/file is not a directory"
    os.mkfifo(tmp_path / "fifo")
    result = await do_push(push_args(server.blob(b"x"), b"x", tmp_path / "fifo"))
    assert result.error == f"{tmp_path}/fifo exists and is not a regular file"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"sha256": None}, "argument 'sha256' must be a string, not NoneType"),
        ({"sha256": "abc"}, "argument 'sha256' must be 64 hex digits"),
        ({"size": "10"}, "argument 'size' must be an integer, not str"),
        ({"size": True}, "argument 'size' must be an integer, not bool"),
        ({"size": -1}, "argument 'size' must not be negative"),
        ({"key": "k" * 32}, "argument 'key' must be bytes, not str"),
        ({"key": b"short"}, "argument 'key' must be 32 bytes"),
        ({"url": 5}, "argument 'url' must be a string, not int"),
        ({"mode": "0644"}, "argument 'mode' must be an integer or null, not str"),
        ({"mode": 0o10000}, "argument 'mode' must be between 0 and 0o7777, not 0o10000"),
        ({"owner": 0}, "argument 'owner' must be a string or null, not int"),
        ({"force": 1}, "argument 'force' must be a boolean, not int"),
        ({"dest": ["/tmp/x"]}, "argument 'dest' must be a string, not list"),
    ],
)
async def test_push_args_are_checked(server: BlobServer, tmp_path: Path, change: dict[str, Any], error: str) -> None:
    args = push_args(server.blob(b"x"), b"x", tmp_path / "f")
    args.update(change)
    result = await do_push(args)
    assert (result.state, result.error) == ("failed", error)
    assert server.requests == []


@pytest.mark.parametrize("name", ["sha256", "size", "url", "key", "dest", "name"])
async def test_missing_push_args_are_named(tmp_path: Path, name: str) -> None:
    args = push_args("http://127.0.0.1:1/x", b"x", tmp_path / "f")
    del args[name]
    result = await do_push(args)
    assert (result.state, result.error) == ("failed", f"missing argument {name!r}")


async def test_cancelled_push_removes_its_temp_file(server: BlobServer, tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK)
    server.routes["/slow"] = Route(200, seal_all(KEY, data), pause=0.4)
    task = asyncio.create_task(do_push(push_args(server.url("/slow"), data, tmp_path / "f")))
    deadline = time.monotonic() + 2
    while not leftovers(tmp_path) and time.monotonic() < deadline:  # the download has begun
        await asyncio.sleep(0.01)
    assert leftovers(tmp_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while leftovers(tmp_path) and time.monotonic() < deadline:  # the thread stops at its next chunk
        await asyncio.sleep(0.02)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- read


async def test_read_a_file(tmp_path: Path) -> None:
    data = b"root:x:0:0\n" * 100
    path = tmp_path / "passwd"
    path.write_bytes(data)
    result = await files.read("t", {"path": str(path), "max_bytes": len(data)}, protected=[])
    assert result.state == "succeeded", result.error
    assert result.data == {"path": str(path), "size": len(data), "sha256": sha(data), "content": data}
    messages.encode(result)


async def test_read_refuses_a_file_over_the_cap_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.img"
    with open(path, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GiB that take no disk
    started = time.monotonic()
    result = await files.read("t", {"path": str(path), "max_bytes": 1024 * 1024}, protected=[])
    assert (result.state, result.error) == (
        "failed",
        "file is 2147483648 bytes, over the 1048576-byte cap (--max-bytes)",
    )
    assert result.data == {"path": str(path)}
    assert time.monotonic() - started < 1


async def test_read_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block: it must not be opened
    cases = {
        str(tmp_path): f"{tmp_path} is a directory (use file ls)",
        str(tmp_path / "fifo"): f"{tmp_path}/fifo is not a regular file",
        "/dev/null": "/dev/null is not a regular file",
        str(tmp_path / "missing"): f"{tmp_path}/missing: No such file or directory",
        "relative": "path must be absolute: 'relative'",
        "/etc/../etc/shadow": "path must not contain '..': '/etc/../etc/shadow'",
    }
    for path, error in cases.items():
        result = await asyncio.wait_for(files.read("t", {"path": path, "max_bytes": 100}, protected=[]), 2)
        assert (result.state, result.error) == ("failed", error)


async def test_read_follows_a_symlink_but_not_into_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "scout"
    data_dir.mkdir()
    (data_dir / "scout.key").write_bytes(b"PRIVATE KEY")
    (tmp_path / "conf").write_bytes(b"ok")
    (tmp_path / "conf-link").symlink_to(tmp_path / "conf")
    (tmp_path / "innocent").symlink_to(data_dir / "scout.key")
    protected = [str(data_dir)]
    ok = await files.read("t", {"path": str(tmp_path / "conf-link"), "max_bytes": 10}, protected=protected)
    assert ok.data["content"] == b"ok"
    for path in (data_dir / "scout.key", tmp_path / "innocent"):
        result = await files.read("t", {"path": str(path), "max_bytes": 100}, protected=protected)
        assert result.state == "failed"
        assert "scout's own data directory" in (result.error or "")
        assert "content" not in result.data


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"max_bytes": 10}, "missing argument 'path'"),
        ({"path": "/etc/hostname"}, "missing argument 'max_bytes'"),
        ({"path": "/etc/hostname", "max_bytes": -1}, "argument 'max_bytes' must not be negative"),
        ({"path": "/etc/hostname", "max_bytes": 1.5}, "argument 'max_bytes' must be an integer, not float"),
        ({"path": b"/etc/hostname", "max_bytes": 10}, "argument 'path' must be a string, not bytes"),
    ],
)
async def test_read_args_are_checked(args: dict[str, Any], error: str) -> None:
    result = await files.read("t", args, protected=[])
    assert (result.state, result.error) == ("failed", error)


# ---------------------------------------------------------------- ls


async def test_ls_a_directory(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_bytes(b"12345")
    (tmp_path / "b.txt").chmod(0o640)
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "c-link").symlink_to("/nonexistent")
    os.mkfifo(tmp_path / "d-fifo")
    os.utime(tmp_path / "b.txt", (1_700_000_000.5, 1_700_000_000.5))
    result = await files.ls("t", {"path": str(tmp_path)}, protected=[])
    assert result.state == "succeeded", result.error
    assert result.data["path"] == str(tmp_path) and result.data["truncated"] is False
    entries = result.data["entries"]
    assert [(e["name"], e["type"]) for e in entries] == [
        ("a-dir", "dir"),
        ("b.txt", "file"),
        ("c-link", "link"),
        ("d-fifo", "other"),
    ]
    assert entries[1] == {"name": "b.txt", "type": "file", "size": 5, "mode": "0640", "mtime": 1_700_000_000.5}
    messages.encode(result)


async def test_ls_a_file_and_odd_names(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    result = await files.ls("t", {"path": str(tmp_path / "f")}, protected=[])
    assert [(e["name"], e["size"]) for e in result.data["entries"]] == [("f", 3)]
    os.close(os.open(os.fsencode(tmp_path) + b"/latin1-\xe9", os.O_CREAT | os.O_WRONLY))  # not UTF-8
    result = await files.ls("t", {"path": str(tmp_path)}, protected=[])
    assert [e["name"] for e in result.data["entries"]] == ["f", "latin1-\ufffd"]
    messages.encode(result)  # a raw surrogate would not encode


async def test_ls_caps_the_entries(tmp_path: Path) -> None:
    for i in range(files.MAX_ENTRIES + 1):
        os.close(os.open(tmp_path / f"{i:05d}", os.O_CREAT | os.O_WRONLY))
    result = await files.ls("t", {"path": str(tmp_path)}, protected=[])
    assert result.data["truncated"] is True
    names = [e["name"] for e in result.data["entries"]]
    assert len(names) == files.MAX_ENTRIES == 10_000
    assert names == sorted(names) and names[0] == "00000" and names[-1] == "09999"


async def test_ls_refusals(tmp_path: Path) -> None:
    data_dir = tmp_path / "scout"
    data_dir.mkdir()
    protected = [str(data_dir)]
    for path in (str(data_dir), f"{tmp_path}/scout/../scout", "relative", ""):
        result = await files.ls("t", {"path": path}, protected=protected)
        assert result.state == "failed", path
    result = await files.ls("t", {"path": str(data_dir)}, protected=protected)
    assert "scout's own data directory" in (result.error or "")
    # The parent lists the data dir as an entry; only looking inside it is refused.
    result = await files.ls("t", {"path": str(tmp_path)}, protected=protected)
    assert [e["name"] for e in result.data["entries"]] == ["scout"]
    result = await files.ls("t", {"path": str(tmp_path / "missing")}, protected=[])
    assert result.error == f"{tmp_path}/missing: No such file or directory"
    result = await files.ls("t", {}, protected=[])
    assert result.error == "missing argument 'path'"


async def test_ls_windows_drives(monkeypatch: pytest.MonkeyPatch) -> None:
    # No Windows host here: the drive probe is faked (its own branch is in test_scout_paths.py).
    monkeypatch.setattr(platform, "drive_roots", lambda os_name=None, probe=None: ["C:\\", "E:\\"])
    result = await files.ls("t", {"path": ""}, protected=[], os_name="windows")
    assert result.state == "succeeded", result.error
    assert result.data["path"] == "" and result.data["truncated"] is False
    assert [(e["name"], e["type"]) for e in result.data["entries"]] == [("C:\\", "dir"), ("E:\\", "dir")]
    result = await files.ls("t", {"path": ""}, protected=[], os_name="linux")
    assert (result.state, result.error) == ("failed", "path is empty")
