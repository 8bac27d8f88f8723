"""Item 5, method exposure: every API route (read from the OpenAPI document) and every message
on the scout port, without credentials or with wrong, revoked or expired ones, is refused and
changes nothing. Tokens are compared in constant time and there is no default token."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import re
import secrets
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from tests.integration.conftest import run_json
from tests.security.rawscout import RawScout, call, log_text
from tests.security.test_key_states import EVERY_SEALED
from troop.general import auth
from troop.general.settings import GeneralSettings
from troop.localfleet import Fleet, _bin
from troop.protocol import messages
from troop.protocol.channel import SCOUT_TO_GENERAL, SealedChannel
from troop.protocol.crypto import new_session_key
from troop.protocol.frames import KIND_CLEAR, KIND_SEALED, encode_frame

OPEN_ROUTES = {("GET", "/api/v1/health"), ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs")}
UPLOAD = b"uploaded without a valid token"


def bodies(marker: Path) -> dict[tuple[str, str], bytes]:
    """A body for each route that takes one, chosen so that an unchecked call would do harm."""
    return {
        ("POST", "/api/v1/jobs"): msgspec.json.encode(
            {"kind": "cmd", "target": {"hosts": "*"}, "command": {"shell": f"touch {marker}"}}
        ),
        ("POST", "/api/v1/keys/accept"): b'{"all": true}',
        ("POST", "/api/v1/keys/reject"): b'{"all": true}',
        ("POST", "/api/v1/keys/delete"): b'{"all": true}',
        ("POST", "/api/v1/tokens"): b'{"name": "intruder", "role": "admin"}',
        ("PUT", "/api/v1/files"): UPLOAD,
    }


def state_snapshot(fleet: Fleet) -> dict[str, Any]:
    """What any route could change, read as the admin."""
    tokens = fleet.api("GET", "/api/v1/tokens")["tokens"]
    return {
        "jobs": [j["job"] for j in fleet.api("GET", "/api/v1/jobs?limit=1000")["jobs"]],
        "keys": fleet.api("GET", "/api/v1/keys"),
        "tokens": sorted((t["name"], t["revoked_at"]) for t in tokens),
        "plugins": fleet.api("GET", "/api/v1/plugins").get("commit"),
        "rotations": log_text(fleet.root / "general.log").count("rotated session key"),
    }


def db_count(fleet: Fleet, table: str) -> int:
    db = sqlite3.connect(fleet.general_dir / "troop.db")
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_every_route_refuses_missing_wrong_revoked_and_expired_tokens(secfleet: Fleet, tmp_path: Path) -> None:
    _, made = run_json(secfleet, "token", "create", "revoked-admin", "--role", "admin")
    revoked = made["token"]
    assert secfleet.cli("token", "revoke", "revoked-admin").returncode == 0
    _, made = run_json(secfleet, "token", "create", "expired-admin", "--role", "admin", "--expires", "1")
    expired = made["token"]
    time.sleep(1.2)
    job_id = secfleet.api("POST", "/api/v1/jobs?wait=10", {"kind": "ping", "target": {"hosts": "web1"}})["job"]

    status, spec, _ = call(secfleet, "GET", "/api/v1/openapi.json")
    assert status == 200
    routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    assert len(routes) >= 17, routes
    marker = tmp_path / "ran-without-a-token"
    params = {"job_id": job_id, "id_or_name": "admin", "sha256": hashlib.sha256(UPLOAD).hexdigest()}
    before = state_snapshot(secfleet)
    credentials: dict[str, str | None] = {
        "missing bearer token": None,
        "invalid token": "troop_" + secrets.token_urlsafe(32),
        "token revoked": revoked,
        "token expired": expired,
    }
    checked = 0
    for method, path in routes:
        url = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], path)
        body = bodies(marker).get((method, path), b"{}" if method in ("POST", "PUT") else None)
        for why, token in credentials.items():
            status, answer, headers = call(secfleet, method, url, body, token=token)
            if (method, path) in OPEN_ROUTES:
                assert status == 200, (method, path)
                continue
            assert status == 401, (method, path, why, status, answer)
            assert headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
            if method != "HEAD":
                assert answer == {"error": why}, (method, path, answer)
            checked += 1
    assert checked >= 4 * 16
    # Odd spellings of the header are no token either.
    admin = secfleet.token
    for header in (admin, f"bearer {admin}", f"Basic {admin}", f"Bearer {admin}x", f"Bearer {admin.upper()}"):
        status, _, _ = call(secfleet, "GET", "/api/v1/tokens", headers={"Authorization": header})
        assert status == 401, header

    time.sleep(0.5)  # a job that slipped through would have run by now
    assert state_snapshot(secfleet) == before
    assert not marker.exists()
    assert call(secfleet, "HEAD", f"/api/v1/files/{params['sha256']}", token=admin)[0] == 404  # the upload was not kept


def test_scout_port_refuses_every_message_before_the_handshake(secfleet: Fleet) -> None:
    before = state_snapshot(secfleet)
    log = secfleet.root / "general.log"
    drops_before = log_text(log).count("closed scout connection on bad input host=?")
    stranger = SealedChannel("web1", SCOUT_TO_GENERAL, new_session_key(), new_session_key())
    attempts: list[tuple[str, bytes]] = []
    for msg in EVERY_SEALED:  # sealed under a key the General never agreed to, and in the clear
        attempts.append((f"sealed {type(msg).__name__}", encode_frame(KIND_SEALED, stranger.seal(msg))))
        attempts.append((f"clear {type(msg).__name__}", encode_frame(KIND_CLEAR, messages.encode(msg))))
    for msg in (  # clear messages other than a scout's signed Hello
        messages.ServerHello(proto=1, general_key=b"k", challenge=b"c" * 32, ts=0),
        messages.Refused(reason="nope"),
        messages.Signed(body=b"not a hello", signature=b"not a signature"),
    ):
        attempts.append((f"clear {type(msg).__name__}", encode_frame(KIND_CLEAR, messages.encode(msg))))
    for what, frame in attempts:
        raw = RawScout(secfleet.scout_port, "web1", None)  # type: ignore[arg-type]
        raw.read()  # the ServerHello
        raw.send_raw(frame)
        assert raw.closed_by_peer(), what
        raw.close()
    assert log_text(log).count("closed scout connection on bad input host=?") - drops_before == len(attempts)
    assert state_snapshot(secfleet) == before
    code, job = run_json(secfleet, "ping", "web1")
    assert code == 0, job


def test_tokens_are_looked_up_by_hash_and_compared_in_constant_time() -> None:
    check = inspect.getsource(auth.TokenService.check)
    assert "hash_token(token)" in check and "hmac.compare_digest(row.token_hash, digest)" in check
    assert "token_by_hash(digest)" in inspect.getsource(auth.TokenService._lookup)
    source = inspect.getsource(auth)
    assert not re.search(r"token\w*\s*[!=]=\s*\w*token", source), "a token compared with =="
    assert "sha256" in inspect.getsource(auth.hash_token)


def test_there_is_no_default_or_configured_token(tmp_path: Path) -> None:
    # No setting holds an API token (filemanager_token_file is a standalone FileManager's service
    # token, which the General presents, never accepts).
    assert [f.name for f in dataclasses.fields(GeneralSettings) if "token" in f.name] == ["filemanager_token_file"]
    src = Path(auth.__file__).parents[1]
    for path in src.rglob("*.py"):
        assert "default-token" not in path.read_text(), path
    bad = tmp_path / "with-token.toml"
    bad.write_text('api_token = "troop_chosen_by_me"\n')
    refused = subprocess.run(
        [_bin("troop-general"), "--data-dir", str(tmp_path / "x"), "--config", str(bad)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert refused.returncode == 2 and "unknown setting" in refused.stderr

    # A data dir with a store but no token in it (a first start is that too): the General writes
    # one admin token, mode 0600, and takes no token from its environment.
    fleet = Fleet(tmp_path / "fleet", env={"TROOP_KEY_BITS": "2048"})
    fleet.general_dir.mkdir(parents=True)
    store_url = f"sqlite+aiosqlite:///{fleet.general_dir / 'troop.db'}"
    subprocess.run([sys.executable, "-m", "troop.store.migrate"], env={**os.environ, "TROOP_STORE_URL": store_url},
                   check=True, timeout=60)
    assert db_count(fleet, "tokens") == 0
    guesses = {"TROOP_TOKEN": "troop_guess1", "TROOP_API_TOKEN": "troop_guess2", "TROOP_ADMIN_TOKEN": "troop_guess3"}
    fleet.env.update(guesses)
    try:
        fleet.start_general()
        token_file = fleet.general_dir / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert fleet.token.startswith("troop_") and fleet.token not in guesses.values()
        assert db_count(fleet, "tokens") == 1
        assert call(fleet, "GET", "/api/v1/jobs", token=fleet.token)[0] == 200
        for guess in guesses.values():
            assert call(fleet, "GET", "/api/v1/jobs", token=guess)[0] == 401
        assert "first start: wrote an admin token" in log_text(fleet.root / "general.log")
    finally:
        fleet.stop()
