"""Hostile bytes on the scout port and bad calls on the API: refused, logged, nothing else hurt."""

from __future__ import annotations

import os
import socket
import struct
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.conftest import run_json
from tests.security.rawscout import RawScout
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.channel import SCOUT_TO_GENERAL, SealedChannel, now_ms
from troop.protocol.crypto import KeyPair, new_session_key
from troop.protocol.frames import KIND_SEALED, encode_frame


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair.generate(2048)


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def still_serving(fleet: Fleet) -> None:
    code, job = run_json(fleet, "ping", "web1,web2,db1")
    assert code == 0 and len(job["hosts"]) == 3


def send_until_closed(fleet: Fleet, data: bytes) -> None:
    """Send `data` to the scout port and read until the General closes the connection."""
    with socket.create_connection(("127.0.0.1", fleet.scout_port)) as s:
        s.sendall(data)
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass


def test_random_bytes_close_the_connection(fleet: Fleet) -> None:
    for _ in range(20):
        send_until_closed(fleet, os.urandom(4096))
    still_serving(fleet)


def test_huge_length_prefix_is_refused_before_buffering(fleet: Fleet) -> None:
    assert fleet.general is not None
    before = rss_kb(fleet.general.pid)
    for _ in range(20):
        send_until_closed(fleet, struct.pack(">2sBBI", b"TP", 1, 0, 0xFFFFFFF0) + b"x" * 1000)
    still_serving(fleet)
    assert rss_kb(fleet.general.pid) - before < 20_000, "memory grew on oversized frames"
    assert "FrameTooLarge" in (fleet.root / "general.log").read_text()


def test_frame_sealed_with_the_wrong_key_closes_only_that_connection(fleet: Fleet, key: KeyPair) -> None:
    raw = RawScout(fleet.scout_port, "intruder1", key)
    welcome, _channel = raw.handshake()
    assert welcome.status == "accepted"  # auto_accept in this fleet
    wrong = SealedChannel("intruder1", SCOUT_TO_GENERAL, new_session_key(), new_session_key())
    raw.sock.sendall(encode_frame(KIND_SEALED, wrong.seal(messages.Result(task_id="x", state="succeeded"))))
    assert raw.closed_by_peer()
    assert "SealError" in (fleet.root / "general.log").read_text()
    still_serving(fleet)


def test_replayed_frame_is_refused(fleet: Fleet, key: KeyPair) -> None:
    raw = RawScout(fleet.scout_port, "intruder1", key)
    _welcome, channel = raw.handshake()
    frame = encode_frame(KIND_SEALED, channel.seal(messages.Heartbeat(ts=now_ms())))
    raw.sock.sendall(frame)
    raw.sock.sendall(frame)
    assert raw.closed_by_peer()
    assert "ReplayError" in (fleet.root / "general.log").read_text()
    still_serving(fleet)


def test_pending_scout_cannot_send_frames(new_fleet: Fleet, key: KeyPair) -> None:
    new_fleet.start_general(auto_accept=False)
    raw = RawScout(new_fleet.scout_port, "waiting1", key)
    welcome, channel = raw.handshake()
    assert welcome.status == "pending"
    raw.sock.sendall(encode_frame(KIND_SEALED, channel.seal(messages.Result(task_id="x", state="succeeded"))))
    assert raw.closed_by_peer()
    assert new_fleet.cli("key", "list").returncode == 0


def test_rejected_scout_is_told_and_disconnected(new_fleet: Fleet, key: KeyPair) -> None:
    new_fleet.start_general(auto_accept=False)
    raw = RawScout(new_fleet.scout_port, "nope1", key)
    welcome, _ = raw.handshake()
    assert welcome.status == "pending"
    assert new_fleet.cli("key", "reject", "nope1").returncode == 0
    raw2 = RawScout(new_fleet.scout_port, "nope1", key)
    welcome2, _ = raw2.handshake()
    assert welcome2.status == "rejected"
    assert raw2.closed_by_peer()


def call(fleet: Fleet, method: str, path: str, body: bytes | None, token: str | None) -> tuple[int, dict[str, Any]]:
    import json

    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(fleet.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_refuses_missing_and_wrong_tokens(fleet: Fleet) -> None:
    for token in (None, "", "troop_wrong", fleet.token + "x"):
        status, body = call(fleet, "GET", "/api/v1/jobs", None, token)
        assert status == 401 and body["error"], token


def test_viewer_reads_but_cannot_run(fleet: Fleet) -> None:
    _code, made = run_json(fleet, "token", "create", f"viewer{time.time_ns()}", "--role", "viewer")
    viewer = made["token"]
    status, _ = call(fleet, "GET", "/api/v1/hosts", None, viewer)
    assert status == 200
    status, body = call(fleet, "POST", "/api/v1/jobs", b'{"kind": "ping"}', viewer)
    assert status == 403 and "viewer" in body["error"]
    result = fleet.cli("ping", "*", token=viewer)
    assert result.returncode == 2 and "403" in result.stderr
    assert fleet.cli("token", "revoke", made["id"]).returncode == 0
    status, _ = call(fleet, "GET", "/api/v1/hosts", None, viewer)
    assert status == 401


def test_malformed_body_gets_422_naming_the_field(fleet: Fleet) -> None:
    status, body = call(fleet, "POST", "/api/v1/jobs", b'{"kind": "ping", "timeout": "soon"}', fleet.token)
    assert status == 422 and "timeout" in body["error"]
    status, body = call(fleet, "POST", "/api/v1/jobs", b'{"kind": "cmd"}', fleet.token)
    assert status == 422 and "command" in body["error"]
    status, body = call(fleet, "POST", "/api/v1/jobs", b"not json", fleet.token)
    assert status == 422


def test_openapi_is_served(fleet: Fleet) -> None:
    status, body = call(fleet, "GET", "/api/v1/openapi.json", None, None)
    assert status == 200 and "/api/v1/jobs" in body["paths"]


def test_audit_records_jobs_keys_and_tokens(fleet: Fleet) -> None:
    import sqlite3

    run_json(fleet, "ping", "web1")
    db = sqlite3.connect(fleet.general_dir / "troop.db")
    actions = {row[0] for row in db.execute("SELECT action FROM audit")}
    db.close()
    assert {"job.ping", "key.new", "token.create"} <= actions, actions
