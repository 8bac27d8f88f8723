"""The FileManager's HTTP API: signed sealed downloads, token-guarded uploads, and every refusal.

Most tests go through Starlette's TestClient; the ones about what a real server does with raw
bytes (dot segments an HTTP client would normalise away, a 10 GiB Content-Length with no body)
talk to uvicorn over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x nudges towards httpx2; httpx is what this project has, and it works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from troop.errors import ConfigError
from troop.filemanager import signing
from troop.filemanager.app import create_app, openapi_document
from troop.filemanager.blobstore import BlobStore
from troop.filemanager.main import load_or_create_token, parse_args, serve
from troop.filemanager.settings import FileManagerSettings
from troop.protocol.blobstream import CHUNK, StreamOpener, blob_key
from troop.settings import load

SECRET = os.urandom(32)
TOKEN = "service-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 1024 * 1024
# Each is a 400 "not a sha256": the blob route takes any rest of the path, so the sha check sees it.
TRAVERSALS = [
    "/fm/v1/blobs/..",
    "/fm/v1/blobs/%2e%2e",
    "/fm/v1/blobs/%2E%2E",
    "/fm/v1/blobs/..%2f..%2fetc%2fpasswd",
    "/fm/v1/blobs/../../etc/passwd",
    "/fm/v1/blobs/%2e%2e/%2e%2e/etc/passwd",
    "/fm/v1/blobs/..%5c..%5cetc%5cpasswd",
    "/fm/v1/blobs/%2fetc%2fpasswd",
    "/fm/v1/blobs//etc/passwd",
    "/fm/v1/blobs/%00",
    "/fm/v1/blobs/" + "A" * 64,
    "/fm/v1/blobs/" + "a" * 64 + "/x",
    "/fm/v1/blobs/" + "a" * 64 + "%2f..",
    "/fm/v1/blobs/",
]
# Starlette's route regex ends in `$`, which also matches before a final newline: `<sha>%0a`
# reaches the handler as `<sha>` itself. Harmless (the same blob, and the URL must still be
# signed for it), so these only have to be refused, not refused with 400.
NEWLINE_TAIL = "/fm/v1/blobs/" + "a" * 64 + "%0a"


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "root", max_size=LIMIT)


@pytest.fixture
def client(store: BlobStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, SECRET, TOKEN), raise_server_exceptions=False) as c:
        yield c


def upload(client: TestClient, data: bytes, **headers: str) -> httpx.Response:
    response: httpx.Response = client.put("/fm/v1/blobs", content=data, headers={**AUTH, **headers})
    return response


def signed(sha: str, host: str = "web1", ttl: int = 300, secret: bytes = SECRET) -> tuple[str, signing.Grant]:
    g = signing.grant(sha, host, ttl=ttl)
    return f"/fm/v1/blobs/{sha}?{g.query(secret)}", g


def unseal(body: bytes, sha: str, g: signing.Grant) -> bytes:
    opener = StreamOpener(blob_key(SECRET, bytes.fromhex(g.nonce), sha))
    out = opener.feed(body)
    opener.finish()
    return out


# downloads


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 5])
def test_signed_download_is_sealed_and_opens(client: TestClient, size: int) -> None:
    data = os.urandom(size)
    sha = upload(client, data).json()["sha256"]
    url, g = signed(sha)
    r = client.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-troop-size"] == str(size)
    assert size < 16 or data not in r.content  # sealed, not plain
    assert unseal(r.content, sha, g) == data


def test_a_stream_opened_with_another_nonce_fails(client: TestClient) -> None:
    sha = upload(client, b"secret bytes").json()["sha256"]
    url, _ = signed(sha)
    _, other = signed(sha)
    with pytest.raises(Exception, match="authentication"):
        unseal(client.get(url).content, sha, other)


def refusal(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert "Traceback" not in r.text


def test_expired_url(client: TestClient) -> None:
    sha = upload(client, b"x").json()["sha256"]
    refusal(client.get(signed(sha, ttl=-5)[0]), 403, "expired")


def test_forged_url(client: TestClient) -> None:
    sha = upload(client, b"x").json()["sha256"]
    refusal(client.get(signed(sha, secret=b"f" * 32)[0]), 403, "bad signature")


def test_url_for_another_blob(client: TestClient) -> None:
    sha = upload(client, b"x").json()["sha256"]
    other = upload(client, b"y").json()["sha256"]
    _, g = signed(sha)
    refusal(client.get(f"/fm/v1/blobs/{other}?{g.query(SECRET)}"), 403, "bad signature")


def test_url_for_another_host(client: TestClient) -> None:
    sha = upload(client, b"x").json()["sha256"]
    url, _ = signed(sha, host="web1")
    params = dict(parse_qsl(url.split("?", 1)[1]))
    params["host"] = "web2"
    refusal(client.get(f"/fm/v1/blobs/{sha}", params=params), 403, "bad signature")


@pytest.mark.parametrize("query", ["", "?exp=1", "?exp=x&host=a&nonce=b&sig=c", "?sig=%C3%A9&exp=9&host=h&nonce=n"])
def test_unsigned_or_malformed_url(client: TestClient, query: str) -> None:
    sha = upload(client, b"x").json()["sha256"]
    r = client.get(f"/fm/v1/blobs/{sha}{query}")
    assert r.status_code == 403
    assert r.json()["error"] in ("unsigned or malformed URL", "bad signature")


def test_missing_blob(client: TestClient) -> None:
    refusal(client.get(signed("0" * 64)[0]), 404, "no such blob")


def test_refusals_are_logged_in_one_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troop.filemanager")
    client.get(signed("0" * 64, ttl=-5)[0])
    refused = [r for r in caplog.records if r.getMessage() == "refused"]
    assert len(refused) == 1
    fields: dict[str, Any] = refused[0].__dict__["fields"]
    assert fields["status"] == 403 and fields["reason"] == "expired URL"


@pytest.mark.parametrize("path", [p for p in TRAVERSALS if "/../" not in p and not p.endswith("/..")])
def test_not_a_sha_through_the_client(client: TestClient, path: str) -> None:
    refusal(client.get(path + "?exp=9999999999&host=h&nonce=" + "0" * 32 + "&sig=00"), 400, "not a sha256")


# uploads


def test_upload(client: TestClient, store: BlobStore) -> None:
    r = upload(client, b"hello")
    assert r.status_code == 201
    sha = hashlib.sha256(b"hello").hexdigest()
    assert r.json() == {"sha256": sha, "size": 5, "created": True}
    assert upload(client, b"hello").json()["created"] is False
    assert store.path(sha).read_bytes() == b"hello"


def test_upload_with_matching_sha_header(client: TestClient) -> None:
    sha = hashlib.sha256(b"hello").hexdigest()
    assert upload(client, b"hello", **{"X-Troop-Sha256": sha}).status_code == 201


def test_upload_with_other_sha_header(client: TestClient, store: BlobStore) -> None:
    refusal(upload(client, b"hello", **{"X-Troop-Sha256": "0" * 64}), 422, "not the expected")
    assert os.listdir(store.root / "tmp") == [] and store.size(hashlib.sha256(b"hello").hexdigest()) is None


@pytest.mark.parametrize("bad", ["../x", "0" * 63, "A" * 64])
def test_upload_with_bad_sha_header(client: TestClient, bad: str) -> None:
    refusal(upload(client, b"hello", **{"X-Troop-Sha256": bad}), 422, "X-Troop-Sha256")


@pytest.mark.parametrize(
    ("headers", "words"),
    [({}, "service token is required"), ({"Authorization": "Bearer nope"}, "bad service token"),
     ({"Authorization": TOKEN}, "required"), ({"Authorization": "Basic " + TOKEN}, "required"),
     ({"Authorization": "Bearer é".encode()}, "bad service token")],
)
def test_upload_needs_the_service_token(client: TestClient, headers: dict[str, Any], words: str) -> None:
    r = client.put("/fm/v1/blobs", content=b"x", headers=headers)
    refusal(r, 401, words)
    assert r.headers["www-authenticate"] == "Bearer"


def test_content_length_over_the_cap_is_refused_before_the_body(client: TestClient) -> None:
    consumed = []

    def body() -> Iterator[bytes]:
        consumed.append(True)
        yield b"x" * 10

    r = client.put("/fm/v1/blobs", content=body(), headers={**AUTH, "Content-Length": str(LIMIT + 1)})
    refusal(r, 413, f"over the {LIMIT}-byte limit")
    assert not consumed


def test_chunked_body_over_the_cap(client: TestClient, store: BlobStore) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(LIMIT // CHUNK + 2):
            yield b"x" * CHUNK

    r = client.put("/fm/v1/blobs", content=body(), headers=AUTH)
    refusal(r, 413, f"over the {LIMIT}-byte limit")
    assert os.listdir(store.root / "tmp") == []


def test_bad_content_length(client: TestClient) -> None:
    refusal(client.put("/fm/v1/blobs", content=b"x", headers={**AUTH, "Content-Length": "-1"}), 400, "Content-Length")


# HEAD, DELETE, health, openapi, errors


def test_head(client: TestClient) -> None:
    sha = upload(client, b"12345").json()["sha256"]
    r = client.head(f"/fm/v1/blobs/{sha}", headers=AUTH)
    assert r.status_code == 200 and r.headers["x-troop-size"] == "5"
    assert client.head("/fm/v1/blobs/" + "0" * 64, headers=AUTH).status_code == 404
    assert client.head(f"/fm/v1/blobs/{sha}").status_code == 401
    assert client.head("/fm/v1/blobs/%2e%2e", headers=AUTH).status_code == 400


def test_delete(client: TestClient, store: BlobStore) -> None:
    sha = upload(client, b"bye").json()["sha256"]
    refusal(client.delete(f"/fm/v1/blobs/{sha}"), 401, "service token")
    r = client.delete(f"/fm/v1/blobs/{sha}", headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"deleted": True})
    r = client.delete(f"/fm/v1/blobs/{sha}", headers=AUTH)
    assert (r.status_code, r.json()) == (404, {"deleted": False})
    refusal(client.delete("/fm/v1/blobs/%2e%2e%2f%2e%2e", headers=AUTH), 400, "not a sha256")
    assert not store.exists(sha)


def test_without_a_service_token_only_downloads_are_served(store: BlobStore) -> None:
    with TestClient(create_app(store, SECRET, None)) as c:
        assert c.put("/fm/v1/blobs", content=b"x", headers=AUTH).status_code in (404, 405)
        assert c.delete("/fm/v1/blobs/" + "0" * 64, headers=AUTH).status_code == 405
        assert c.head("/fm/v1/blobs/" + "0" * 64, headers=AUTH).status_code == 403
        assert "/fm/v1/blobs" not in c.get("/fm/v1/openapi.json").json()["paths"]


def test_health(client: TestClient) -> None:
    assert client.get("/fm/v1/health").json()["blobs"] == 0
    upload(client, b"a")
    upload(client, b"b")
    body = client.get("/fm/v1/health").json()
    assert body["ok"] is True and body["blobs"] == 2


def test_openapi(client: TestClient) -> None:
    doc = client.get("/fm/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert doc == openapi_document(True)
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert routes == {
        ("GET", "/fm/v1/health"), ("GET", "/fm/v1/openapi.json"), ("PUT", "/fm/v1/blobs"),
        ("GET", "/fm/v1/blobs/{sha}"), ("HEAD", "/fm/v1/blobs/{sha}"), ("DELETE", "/fm/v1/blobs/{sha}"),
    }


def test_unknown_route_is_json(client: TestClient) -> None:
    r = client.get("/fm/v2/whatever")
    assert r.status_code == 404 and "error" in r.json()


def test_unexpected_error_is_a_500_and_one_log_line(
    client: TestClient, store: BlobStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sha: str) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "size", broken)
    caplog.set_level(logging.WARNING)
    r = client.get(signed("0" * 64)[0])
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the FileManager's log has the details"}
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "disk on fire" in errors[0].getMessage()


# a real server, raw bytes

OPENED: list[str] | None = None  # paths opened while a test records them (see the audit hook)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], str | bytes):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one does nothing unless OPENED is set


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    global OPENED
    OPENED = []
    try:
        yield OPENED
    finally:
        OPENED = None


@pytest.fixture
async def server(store: BlobStore) -> AsyncIterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(create_app(store, SECRET, TOKEN), lifespan="off", access_log=False, log_level="warning")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    yield sock.getsockname()[:2]
    srv.should_exit = True
    await asyncio.wait_for(task, 5)


async def raw_request(addr: tuple[str, int], head: str, *, wait_close: bool = False) -> tuple[int, bytes, bool]:
    """Send `head` as is; return the status, the response body, and (with `wait_close`) whether
    the server closed the connection after answering."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status = int(header.split(b" ", 2)[1])
        length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        content = await asyncio.wait_for(reader.readexactly(length), 5)
        closed = False
        if wait_close:
            with contextlib.suppress(TimeoutError):
                closed = await asyncio.wait_for(reader.read(1), 2) == b""
        return status, content, closed
    finally:
        writer.close()


async def test_10_gib_content_length_gets_413_without_the_body(server: tuple[str, int], store: BlobStore) -> None:
    head = (f"PUT /fm/v1/blobs HTTP/1.1\r\nHost: fm\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 10737418240\r\n\r\n")
    started = asyncio.get_running_loop().time()
    status, content, closed = await raw_request(server, head, wait_close=True)
    assert status == 413
    assert "10737418240" in content.decode() and str(LIMIT) in content.decode()
    assert asyncio.get_running_loop().time() - started < 3  # answered at once, not after a body timeout
    assert closed  # or the server would go on to read (and drop) the 10 GiB to reach the next request
    assert os.listdir(store.root / "tmp") == []


async def test_a_client_that_hangs_up_mid_upload_leaves_no_temp_file(
    server: tuple[str, int], store: BlobStore
) -> None:
    _, writer = await asyncio.open_connection(*server)
    writer.write((f"PUT /fm/v1/blobs HTTP/1.1\r\nHost: fm\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Length: {LIMIT}\r\n\r\n").encode() + b"x" * (LIMIT // 2))
    await writer.drain()
    for _ in range(200):
        if os.listdir(store.root / "tmp"):
            break
        await asyncio.sleep(0.01)
    assert os.listdir(store.root / "tmp"), "the upload never started"
    writer.close()
    for _ in range(300):
        if not os.listdir(store.root / "tmp"):
            break
        await asyncio.sleep(0.01)
    assert os.listdir(store.root / "tmp") == []


@pytest.mark.parametrize("path", [*TRAVERSALS, NEWLINE_TAIL])
async def test_traversal_never_reads_outside_the_root(
    server: tuple[str, int], store: BlobStore, tmp_path: Path, path: str
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0")
    query = "?exp=9999999999&host=h&nonce=" + "0" * 32 + "&sig=" + "0" * 64
    with recording_opens() as opened:
        status, content, _ = await raw_request(server, f"GET {path}{query} HTTP/1.1\r\nHost: fm\r\n\r\n")
    assert status == (403 if path == NEWLINE_TAIL else 400), content
    assert b"root:" not in content and "error" in json.loads(content)
    root = store.root.resolve()
    outside = [p for p in opened if not Path(p).resolve().is_relative_to(root)]
    assert outside == []


async def test_the_open_recorder_sees_blob_reads(server: tuple[str, int], store: BlobStore) -> None:
    """The check above is only worth something if a read really shows up in `opened`."""
    sha = hashlib.sha256(b"abc").hexdigest()
    (store.root / "blobs" / sha[:2]).mkdir()
    store.path(sha).write_bytes(b"abc")
    url, _ = signed(sha)
    with recording_opens() as opened:
        status, _, _ = await raw_request(server, f"GET {url} HTTP/1.1\r\nHost: fm\r\n\r\n")
    assert status == 200
    assert str(store.path(sha)) in opened


async def test_streamed_upload_and_download_through_a_real_server(server: tuple[str, int]) -> None:
    data = os.urandom(LIMIT - 5)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 10_000):
            yield data[i : i + 10_000]

    async with httpx.AsyncClient(base_url=f"http://{server[0]}:{server[1]}") as http:
        r = await http.put("/fm/v1/blobs", content=body(), headers=AUTH)  # chunked: no Content-Length
        assert r.status_code == 201, r.text
        sha = r.json()["sha256"]
        url, g = signed(sha)
        got = await http.get(url)
    assert got.headers["x-troop-size"] == str(len(data))
    assert unseal(got.content, sha, g) == data


# the troop-filemanager command


def test_parse_args() -> None:
    args = parse_args(["--data-dir", "/d", "--listen", "127.0.0.1:1", "--config", "f.toml"])
    assert (args.data_dir, args.listen, args.config) == ("/d", "127.0.0.1:1", "f.toml")


def test_service_token_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "service.token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token
    path.write_text("short\n")
    with pytest.raises(ConfigError):
        load_or_create_token(path)


def test_settings_defaults(tmp_path: Path) -> None:
    s = load(FileManagerSettings, None, {"data_dir": str(tmp_path)}, env={})
    assert s.listen == "0.0.0.0:6859" and s.max_upload == 4 * 1024**3
    assert s.secret_path == tmp_path / "filemanager.key"
    assert s.service_token_path == tmp_path / "service.token"
    s = load(FileManagerSettings, None, {"secret_file": "/k", "service_token_file": "/t"}, env={})
    assert (s.secret_path, s.service_token_path) == (Path("/k"), Path("/t"))


async def test_serve_until_stopped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troop.filemanager")
    settings = FileManagerSettings(data_dir=tmp_path, listen="127.0.0.1:0", max_upload=100)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    for _ in range(500):
        ready = [r for r in caplog.records if r.getMessage() == "filemanager ready"]
        if ready or task.done():
            break
        await asyncio.sleep(0.01)
    assert ready, task
    address = ready[0].__dict__["fields"]["address"]
    token = (tmp_path / "service.token").read_text().strip()
    for f in ("service.token", "filemanager.key"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        assert (await http.get("/fm/v1/health")).json()["ok"] is True
        headers = {"Authorization": f"Bearer {token}"}
        assert (await http.put("/fm/v1/blobs", content=b"x" * 100, headers=headers)).status_code == 201
        assert (await http.put("/fm/v1/blobs", content=b"x" * 101, headers=headers)).status_code == 413
    stop.set()
    await asyncio.wait_for(task, 5)


def test_the_command_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "troop.filemanager.main", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "filemanager ready" in line and "address=127.0.0.1:" in line, line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
