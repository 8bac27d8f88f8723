"""A fake of the General's HTTP API, shared by the CLI's unit tests (tests/unit/test_cli_*.py).

It stands in for the General only to test the client side of the contract: request paths,
headers and bodies, the bearer token, the streamed upload (HEAD /files/{sha256}, PUT /files),
the chunked NDJSON events stream, error replies, and how the CLI shows what it gets.  The real
General is exercised by tests/integration.

Built on the standard library's http.server, on port 0 in a thread: `serve()`, or the `api`
fixture of tests/unit/conftest.py, which serves the FakeApi of the `fake_api` fixture (a test
module overrides `fake_api` for other defaults).  A test sets the canned replies on the
FakeApi it gets, then reads back what the CLI sent from `seen`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from troop.cli.main import main

TOKEN = "s3cret"
JOB_ID = "20260101000000abcdef"
SRC = str(Path(__file__).resolve().parents[2] / "src")
MB = 1 << 20
KEEP = 1 << 16  # how much of an upload the fake keeps, for exact comparisons on small files


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None  # the JSON body, if any


@dataclass
class Received:
    size: int
    sha256: str
    head: bytes  # the first KEEP bytes


Route = Callable[[Seen], tuple[int, Any]]


def cmd_result(state: str, **kw: Any) -> dict[str, Any]:
    """A host's result as a command job reports it (no `data`); no duration unless given."""
    base: dict[str, Any] = {
        "state": state, "exit_code": None, "stdout": "", "stderr": "",
        "stdout_truncated": False, "stderr_truncated": False, "error": None,
        "duration": None, "late": False,
    }
    return base | kw


def result(state: str, data: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    """A host's result carrying `data` (file, plugin and scout jobs), 0.02 s unless given."""
    return cmd_result(state, **{"duration": 0.02, "data": data or {}, **kw})


def target(hosts: str = "web*", **kw: Any) -> dict[str, Any]:
    """The `target` of a POSTed job."""
    return {"hosts": hosts, "os": None, "tags": [], "one": False, **kw}


@dataclass
class FakeApi:
    """Canned replies: `routes` first, then uploads (HEAD/PUT /files) and jobs (POST, job, events)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # how each host's job ends
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)  # (method, path sans query)
    seen: list[Seen] = field(default_factory=list)
    job_id: int | str = JOB_ID
    kind: str = "cmd"  # taken from the POSTed job
    sent: dict[str, Any] = field(default_factory=lambda: result("sent"))  # a host of a running job
    # The events stream.
    output: list[dict[str, Any]] = field(default_factory=list)  # output events before the hosts
    cut_stream: bool = False  # end the events stream before "done"
    release: threading.Event | None = None  # hold the stream after the first host until set
    chunk_size: int | None = None  # re-cut the stream into chunks of this many bytes
    # Uploads.
    blobs: set[str] = field(default_factory=set)  # what HEAD /files/{sha} answers 200 for
    received: Received | None = None  # the last upload
    limit: int | None = None  # larger uploads get 413
    refuse_early: bool = False  # answer 413 from Content-Length, without reading the body
    on_body: Callable[[], None] | None = None  # called once an upload's body is read
    url: str = ""

    def job(self, state: str = "done") -> dict[str, Any]:
        hosts = self.results if state == "done" else {h: self.sent for h in self.results}
        return {"job": self.job_id, "kind": self.kind, "state": state, "created_at": 1.0, "hosts": hosts}

    def events(self) -> Iterator[dict[str, Any]]:
        yield {"event": "job", "job": self.job("running")}
        yield from self.output
        for i, name in enumerate(sorted(self.results)):
            yield {"event": "host", "host": name, **self.results[name]}
            if i == 0 and self.release is not None:
                self.release.wait(10)
        if not self.cut_stream:
            yield {"event": "done", "job": self.job()}

    def paths(self) -> list[tuple[str, str]]:
        return [(s.method, s.path) for s in self.seen]

    def posted(self) -> Any:
        """The body of the one job submitted."""
        (body,) = [s.body for s in self.seen if (s.method, s.path) == ("POST", "/api/v1/jobs")]
        return body

    @property
    def uploaded(self) -> bytes | None:
        """The last upload's first KEEP bytes (all of a small one); None if there was none."""
        return None if self.received is None else self.received.head


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def handle_one(self) -> None:
        api = self.server.api
        seen = Seen(self.command, self.path, dict(self.headers))
        api.seen.append(seen)
        length = int(self.headers.get("Content-Length") or 0)
        too_big = {"error": f"upload of {length} bytes is over the {api.limit}-byte limit"}
        # Every body is read before any answer, the 401 included, so the CLI is never cut off
        # mid-send; only `refuse_early` answers an upload from its Content-Length and hangs up.
        if self.command == "PUT":
            if api.limit is not None and length > api.limit and api.refuse_early:
                self.close_connection = True
                return self.reply(413, too_big)
            api.received = self.receive(length)
            if api.on_body is not None:
                api.on_body()
        else:
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("Content-Type") == "application/json":
                seen.body = json.loads(raw)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(401, {"error": "invalid or missing token"})
        route = self.path.split("?")[0]
        if (self.command, route) in api.routes:
            return self.reply(*api.routes[(self.command, route)](seen))
        if self.command == "HEAD" and route.startswith("/api/v1/files/"):
            return self.reply(200 if route.rsplit("/", 1)[-1] in api.blobs else 404, None)
        if (self.command, route) == ("PUT", "/api/v1/files") and api.received is not None:
            if api.limit is not None and api.received.size > api.limit:
                return self.reply(413, too_big)
            api.blobs.add(api.received.sha256)
            return self.reply(201, {"sha256": api.received.sha256, "size": api.received.size})
        if (self.command, route) == ("POST", "/api/v1/jobs"):
            api.kind = seen.body["kind"]
            return self.reply(201, {"job": api.job_id, "hosts": sorted(api.results), "state": "running"})
        if route == f"/api/v1/jobs/{api.job_id}/events":
            return self.stream(api.events())
        if route == f"/api/v1/jobs/{api.job_id}":
            return self.reply(200, api.job())
        return self.reply(404, {"error": f"no route {route}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_one

    def receive(self, length: int) -> Received:
        """Read and discard an upload as it arrives, hashing on the way: the fake holds none."""
        digest, got, head = hashlib.sha256(), 0, bytearray()
        while got < length:
            chunk = self.rfile.read(min(MB, length - got))
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
            if len(head) < KEEP:
                head += chunk[: KEEP - len(head)]
        return Received(got, digest.hexdigest(), bytes(head))

    def reply(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def stream(self, events: Iterator[Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        size = self.server.api.chunk_size
        if size is not None:
            # Lines split across chunks and several lines in one chunk.
            blob = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            events = iter([blob[i : i + size] for i in range(0, len(blob), size)])
        for event in events:
            # One event per chunk, flushed, so the client must cope with lines arriving apart.
            data = event if isinstance(event, bytes) else json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    api: FakeApi
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The CLI hangs up as soon as it has the "done" event, sometimes while we still write
        # the closing chunk; the default handler would print that reset into the captured
        # stderr the tests compare.
        pass


@contextmanager
def serve(api: FakeApi | None = None) -> Iterator[FakeApi]:
    """Serve `api` (a new FakeApi by default) on 127.0.0.1, port 0, until the block ends."""
    server = Server(("127.0.0.1", 0), Handler)
    server.api = FakeApi() if api is None else api
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    server.api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server.api
    finally:
        server.shutdown()
        server.server_close()


def troop(api: FakeApi, *argv: str, token: str = TOKEN) -> int:
    """`troop ARGV` in this process, against the fake."""
    return main(["--url", api.url, "--token", token, *argv])


def spawn(api: FakeApi, *argv: str) -> subprocess.Popen[str]:
    """`python -m troop.cli.main ARGV` in a child process, against the fake, output piped."""
    env = {**os.environ, "PYTHONPATH": SRC, "TROOP_URL": api.url, "TROOP_TOKEN": TOKEN}
    return subprocess.Popen(
        [sys.executable, "-m", "troop.cli.main", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
