"""A small blocking client for the General's HTTP API, on http.client and json only.

One TCP connection per request: the CLI makes two or three calls per run, and a fresh
connection never fails the way a reused keep-alive one can when the server has closed it
(which would leave us guessing whether a POST took effect).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

from troop import __version__
from troop.cli.errors import ApiError, UnreachableError, UsageError

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any, BinaryIO

    JsonObj = dict[str, Any]

# Plain calls answer quickly; long-polls get their wait on top of this.
REQUEST_TIMEOUT = 30.0
# An upload's answer may wait for the General to finish writing a large file.
UPLOAD_TIMEOUT = 120.0
# Bytes per read (and per send) when streaming an upload from disk.
UPLOAD_BLOCK = 256 * 1024


class ApiClient:
    """Calls under `<url>/api/v1`; raises ApiError or UnreachableError, never http.client's."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"invalid General URL {url!r}: expected http://HOST[:PORT]")
        try:
            self._port = parts.port
        except ValueError:
            raise UsageError(f"invalid port in General URL {url!r}") from None
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._prefix = parts.path.rstrip("/") + "/api/v1"
        self._headers = {"Accept": "application/json", "User-Agent": f"troop/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, *, timeout: float = REQUEST_TIMEOUT) -> JsonObj:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: JsonObj, *, timeout: float = REQUEST_TIMEOUT) -> JsonObj:
        return self.request("POST", path, body, timeout=timeout)

    def delete(self, path: str) -> JsonObj:
        return self.request("DELETE", path)

    def exists(self, path: str) -> bool:
        """HEAD `path`: True on 2xx, False on 404; any other error raises as usual."""
        try:
            conn, _ = self._open("HEAD", path, None, REQUEST_TIMEOUT)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        conn.close()
        return True

    def put_stream(
        self, path: str, stream: BinaryIO, size: int, headers: Mapping[str, str], *,
        timeout: float = UPLOAD_TIMEOUT,
    ) -> JsonObj:
        """PUT exactly `size` bytes read from `stream` (at its current position), streamed.

        The body is never held in memory: http.client reads it UPLOAD_BLOCK bytes at a time
        and sends each block before reading the next, under an explicit Content-Length.
        """
        return self._json(*self._open(
            "PUT", path, None, timeout, upload=_Upload(stream, size), headers=headers
        ))

    def request(
        self, method: str, path: str, body: JsonObj | None = None, *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> JsonObj:
        return self._json(*self._open(method, path, body, timeout))

    def _json(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> JsonObj:
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise UnreachableError(self.url, _reason(exc)) from exc
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(resp.status, "the General sent a reply that is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(resp.status, "the General sent a reply that is not a JSON object")
        return data

    def events(self, path: str, *, idle_timeout: float | None) -> Iterator[JsonObj]:
        """Yield the objects of a newline-delimited JSON stream as each line arrives.

        The stream is best effort: if it breaks, iteration just ends and the caller asks for
        the job's state instead, which is authoritative.
        """
        conn, resp = self._open("GET", path, None, idle_timeout)
        try:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException):
                    return
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue  # blank keep-alive lines
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    yield event
        finally:
            conn.close()

    def _open(
        self, method: str, path: str, body: JsonObj | None, timeout: float | None, *,
        upload: _Upload | None = None, headers: Mapping[str, str] | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout, blocksize=UPLOAD_BLOCK)
        all_headers = {**self._headers, **(headers or {})}
        payload: bytes | _Upload | None = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif upload is not None:
            payload = upload
            all_headers["Content-Length"] = str(upload.size)  # never chunked: the size is known
        opened = False
        try:
            try:
                conn.request(method, self._prefix + path, body=payload, headers=all_headers)
            except OSError as exc:
                if upload is None:
                    raise
                # The General may refuse an upload before reading it all (413) and hang up;
                # its answer can still be waiting in the socket, and says more than EPIPE.
                resp = _early_answer(conn, exc)
            else:
                resp = conn.getresponse()
            if resp.status >= 400:
                raise ApiError(resp.status, _error_message(resp.read(), resp.reason))
            opened = True
        except (OSError, http.client.HTTPException) as exc:
            raise UnreachableError(self.url, _reason(exc)) from exc
        finally:
            if not opened:
                conn.close()
        return conn, resp


class _Upload:
    """A request body of exactly `size` bytes from an open binary file, read as it is sent.

    http.client calls `read(blocksize)` until it gets b""; capping at `size` keeps the body
    equal to the Content-Length even if the file grows meanwhile.  A file that shrinks would
    leave the request short and the General waiting, so that is an error here.
    """

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.size = size
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n < 0 else min(n, self.left)
        data = self.stream.read(want)
        if not data:
            raise UsageError("the file got shorter while it was being uploaded")
        self.left -= len(data)
        return data


def _early_answer(conn: http.client.HTTPConnection, exc: OSError) -> http.client.HTTPResponse:
    """The General's answer to a request whose body it stopped reading, or `exc` again."""
    try:
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException):
        raise exc from None
    if resp.status < 400:
        raise exc  # an upload cut short cannot have succeeded
    return resp


def quote(segment: object) -> str:
    """One path segment, escaped (job ids and token names come from the user)."""
    return urllib.parse.quote(str(segment), safe="")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text or type(exc).__name__


def _error_message(raw: bytes, reason: str) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return reason or "error"
    if isinstance(data, dict):
        if isinstance(data.get("error"), str):
            return str(data["error"])
        detail = data.get("detail")  # FastAPI's own shape, should one slip through
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            where = ".".join(str(p) for p in first.get("loc", []))
            return f"{where}: {first.get('msg', 'invalid request')}"
    return reason or "error"
