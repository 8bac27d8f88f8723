"""Hand-written peers that speak the scout protocol, so a test can misbehave on purpose.

- :class:`RawScout` dials a real General and does what a scout does, or anything else.
- :class:`RawGeneral` listens for a real scout and does what a General does, or anything else.

Both are built from ``troop.protocol`` only (the same pure functions the real ones use) and
use blocking sockets: a test drives them step by step.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from troop.localfleet import Fleet
from troop.protocol import handshake, messages
from troop.protocol.channel import GENERAL_TO_SCOUT, SCOUT_TO_GENERAL, SealedChannel, now_ms
from troop.protocol.crypto import KeyPair, PublicKey, new_session_key
from troop.protocol.frames import KIND_CLEAR, KIND_SEALED, FrameDecoder, encode_frame

# A made-up OS: the General has no scout_manager build for it, so it sends raw scouts no
# plugin.update job of its own when they connect (which would clutter `troop job list`).
RAW_OS = "rawos"


class _Peer:
    """Frames in and out of one blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.frames: list[tuple[int, bytes]] = []

    def read(self, timeout: float = 10.0) -> tuple[int, bytes]:
        self.sock.settimeout(timeout)
        while not self.frames:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by peer")
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_clear(self, msg: msgspec.Struct) -> None:
        self.sock.sendall(encode_frame(KIND_CLEAR, messages.encode(msg)))

    def send_body(self, body: bytes) -> None:
        self.sock.sendall(encode_frame(KIND_SEALED, body))

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the peer closes (whatever it sends first is read and dropped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


class RawScout(_Peer):
    """A scout written by hand from the protocol package."""

    def __init__(self, port: int, hostname: str, key: KeyPair, facts: messages.Facts | None = None) -> None:
        super().__init__(socket.create_connection(("127.0.0.1", port), timeout=10))
        self.hostname, self.key = hostname, key
        self.facts = facts or messages.Facts(os=RAW_OS)
        self.c = b""
        self.channel: SealedChannel | None = None

    def handshake(self) -> tuple[messages.Welcome, SealedChannel]:
        """Hello, then the first Welcome; the channel has a random receive key unless accepted."""
        _, body = self.read()
        hello = messages.decode_clear(body)
        assert isinstance(hello, messages.ServerHello)
        self.general_key = PublicKey.from_der(hello.general_key)
        self.c = new_session_key()
        signed, self.nonce = handshake.build_hello(self.key, self.hostname, self.facts, hello, self.c, now_ms())
        self.send_clear(signed)
        return self.read_welcome()

    def read_welcome(self, timeout: float = 10.0) -> tuple[messages.Welcome, SealedChannel]:
        _, body = self.read(timeout)
        signed_welcome = messages.decode_clear(body)
        assert isinstance(signed_welcome, messages.Signed), signed_welcome
        welcome, g2s = handshake.open_welcome(signed_welcome, self.general_key, self.nonce, self.key, self.hostname)
        self.channel = SealedChannel(
            self.hostname, SCOUT_TO_GENERAL, self.c, g2s or new_session_key(), recv_key_id=welcome.key_id
        )
        return welcome, self.channel

    def seal(self, msg: msgspec.Struct) -> bytes:
        assert self.channel is not None
        return self.channel.seal(msg)

    def send(self, msg: msgspec.Struct) -> None:
        self.send_body(self.seal(msg))

    def next_message(self, timeout: float = 10.0) -> messages.SealedMessage:
        assert self.channel is not None
        kind, body = self.read(timeout)
        assert kind == KIND_SEALED
        return self.channel.open(body)

    def wait_task(self, job_id: str, timeout: float = 10.0) -> messages.Task:
        """The Task of this job, skipping heartbeats and anything else that comes first."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next_message(max(deadline - time.monotonic(), 0.01))
            if isinstance(msg, messages.Task) and msg.job_id == job_id:
                return msg


def accepted_raw_scout(fleet: Fleet, hostname: str, key: KeyPair) -> RawScout:
    """A RawScout whose key is accepted, on a General with or without auto_accept."""
    raw = RawScout(fleet.scout_port, hostname, key)
    welcome, _ = raw.handshake()
    if welcome.status == "pending":
        fleet.api("POST", "/api/v1/keys/accept", {"hosts": [hostname]})
        raw.close()
        raw = RawScout(fleet.scout_port, hostname, key)
        welcome, _ = raw.handshake()
    assert welcome.status == "accepted", welcome
    return raw


class RawGeneralConn(_Peer):
    """One scout's connection to a :class:`RawGeneral`, after an `accepted` handshake."""

    def __init__(self, sock: socket.socket, key: KeyPair, key_id: int = 1) -> None:
        super().__init__(sock)
        self.general_key = key
        self.key_id = key_id

    def handshake(self) -> None:
        hello_msg = handshake.server_hello(self.general_key, now_ms())
        self.send_clear(hello_msg)
        kind, body = self.read(5.0)
        signed = messages.decode_clear(body)
        assert kind == KIND_CLEAR and isinstance(signed, messages.Signed)
        opened = handshake.open_hello(signed, hello_msg.challenge, self.general_key, now_ms())
        self.hello, self.scout_key, self.c = opened
        self.hostname = self.hello.hostname
        self.k = new_session_key()  # K_s: any 32 random bytes will do for a scout
        self.send_clear(
            handshake.build_welcome(
                self.general_key, self.hello, self.scout_key, "accepted", now_ms(),
                key_id=self.key_id, g2s_key=self.k, heartbeat=60.0,
            )
        )
        self.channel = self.make_channel(self.k, self.key_id)

    def make_channel(
        self, key: bytes, key_id: int, *, hostname: str | None = None, skew_ms: int = 0
    ) -> SealedChannel:
        """A General->scout sealer; `skew_ms` moves its clock, `hostname` seals for another scout."""
        return SealedChannel(
            hostname or self.hostname, GENERAL_TO_SCOUT, key, self.c, send_key_id=key_id,
            clock=lambda: now_ms() + skew_ms,
        )

    def send(self, msg: msgspec.Struct) -> bytes:
        body = self.channel.seal(msg)
        self.send_body(body)
        return body

    def wait_for(self, match: Callable[[messages.SealedMessage], bool], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            kind, body = self.read(max(deadline - time.monotonic(), 0.01))
            assert kind == KIND_SEALED
            msg = self.channel.open(body)
            if match(msg):
                return msg

    def result_of(self, task_id: str, timeout: float = 15.0) -> messages.Result:
        found = self.wait_for(lambda m: isinstance(m, messages.Result) and m.task_id == task_id, timeout)
        assert isinstance(found, messages.Result)
        return found


class RawGeneral:
    """A General written by hand: listens on a free port, accepts, hands out any key it likes."""

    def __init__(self, key: KeyPair) -> None:
        self.key = key
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self.listener.getsockname()[1])

    def accept(self, timeout: float = 20.0) -> RawGeneralConn:
        """The next connection that completes a handshake; abandoned ones are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no scout connected to the RawGeneral")
            self.listener.settimeout(left)
            sock, _ = self.listener.accept()
            conn = RawGeneralConn(sock, self.key)
            try:
                conn.handshake()
            except (ConnectionError, TimeoutError, OSError):
                conn.close()  # a connection the scout gave up on while it waited in the backlog
                continue
            return conn

    def close(self) -> None:
        self.listener.close()


# ---------------------------------------------------------------- small helpers for the tests


def flip(data: bytes, position: int) -> bytes:
    """`data` with every bit of one byte inverted."""
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


def sample_positions(body_len: int, ciphertext_samples: int = 15) -> list[int]:
    """Positions in a sealed body: every prefix, nonce and tag byte, and some of the ciphertext."""
    prefix_and_nonce = list(range(33))
    tag = list(range(body_len - 16, body_len))
    inner = list(range(33, body_len - 16))
    step = max(1, len(inner) // ciphertext_samples)
    return prefix_and_nonce + inner[::step][:ciphertext_samples] + tag


def call(
    fleet: Fleet,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP call to the General's API: (status, JSON body or None, headers)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(fleet.url + path, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status, got = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(raw) if raw else None, got
    except ValueError:
        return status, None, got


def db_rows(fleet: Fleet, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the General's SQLite store (read-only; WAL lets us read while it writes)."""
    db = sqlite3.connect(f"file:{fleet.general_dir / 'troop.db'}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute(query, args))
    finally:
        db.close()


def task_id_of(fleet: Fleet, job_id: str, hostname: str) -> str:
    """The task id the General gave one host of a job (the API does not show it)."""
    rows = db_rows(fleet, "SELECT task_id FROM job_hosts WHERE job_id = ? AND hostname = ?", job_id, hostname)
    assert rows, f"no task for {hostname} in job {job_id}"
    return str(rows[0][0])


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
