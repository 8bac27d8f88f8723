"""A plain HTTP/1.1 GET, enough for the FileManager's downloads, on a bare socket.

http.client would do, but it imports the whole `email` package (~2.4 MB that then stays in the
scout for good); the bytes fetched here are sealed end to end (troop.protocol.blobstream), so
this needs no TLS and no more of HTTP than a status, headers, and a plain or chunked body.
"""

from __future__ import annotations

import socket

MAX_HEADER = 64 * 1024


class HttpError(OSError):
    """The server broke HTTP (or the connection broke)."""


class Response:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self.status, self.reason, self.headers = self._head()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        length = self.headers.get("content-length")
        self._left: int | None = int(length) if length and length.isdigit() and not self._chunked else None
        self._chunk_left = 0
        self._done = False

    def _fill(self) -> bool:
        data = self._sock.recv(256 * 1024)
        self._buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if len(self._buf) > MAX_HEADER or not self._fill():
                raise HttpError("connection closed in the middle of an HTTP header")
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _head(self) -> tuple[int, str, dict[str, str]]:
        parts = self._line().decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP response: {' '.join(parts)[:80]!r}")
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" at its end."""
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunked(size)
        if not self._buf and not self._fill():
            if self._left:
                raise HttpError("connection closed before the end of the body")
            self._done = True
            return b""
        take = size if self._left is None else min(size, self._left)
        data, self._buf = self._buf[:take], self._buf[take:]
        if self._left is not None:
            self._left -= len(data)
            self._done = self._left == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            head = self._line().split(b";")[0].strip()
            try:
                self._chunk_left = int(head, 16)
            except ValueError:
                raise HttpError("bad chunk size") from None
            if self._chunk_left == 0:
                self._done = True
                return b""
        while not self._buf:
            if not self._fill():
                raise HttpError("connection closed in the middle of a chunk")
        take = min(size, self._chunk_left, len(self._buf))
        data, self._buf = self._buf[:take], self._buf[take:]
        self._chunk_left -= take
        if self._chunk_left == 0:
            self._line()  # the CRLF after each chunk
        return data


def get(host: str, port: int, target: str, timeout: float) -> tuple[socket.socket, Response]:
    """Send GET `target` and return the socket (the caller closes it) and the response."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: troop-scout\r\n\r\n"
        )
        sock.sendall(request.encode("latin-1"))
        return sock, Response(sock)
    except BaseException:
        sock.close()
        raise
