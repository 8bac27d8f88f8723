"""Item 9: the blacklist refuses the spellings it claims to catch, on the General and on the
scout, and its known bypasses are written down (it is advisory); roles and target limits of
tokens hold, and every allow and deny lands in the audit table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_json
from tests.security.conftest import Victim
from tests.security.rawscout import accepted_raw_scout, call, db_rows
from troop import blacklist
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.crypto import KeyPair

# (argv, shell): spellings of `reboot` and `rm -rf /` the default blacklist refuses.
CAUGHT: list[tuple[list[str] | None, str | None]] = [
    (["reboot"], None),
    (["/sbin/reboot"], None),
    (["sudo", "reboot"], None),
    (["env", "X=1", "reboot"], None),
    (["sh", "-c", "reboot"], None),
    (None, "/sbin/reboot"),
    (None, "sh -c 'reboot'"),
    (None, 'bash -c "sleep 0; reboot"'),
    (None, 'r""eboot'),
    (None, "r''eboot"),
    (None, "re\\boot"),
    (None, "$(echo reboot)"),
    (None, "`reboot`"),
    (None, "exec reboot"),
    (None, "true && reboot"),
    (None, "echo reboot | sh"),  # caught only because the word appears at all
    (None, "systemctl reboot"),
    (None, "/bin/rm -rf /"),
    (None, "rm -r -f /"),
    (None, "rm -fr --no-preserve-root /"),
    (None, "sh -c 'rm  -rf /'"),
    (None, "bash -c \"bash -c 'shutdown -h now'\""),
]
# Known bypasses: docs/security.md lists them. If one starts being caught, update the docs.
BYPASSES: list[str] = [
    "$(echo re)boot",
    "X=reboot; $X",
    "R=re; ${R}boot",
    "/sbin/reb?ot",
    "echo cmVib290 | base64 -d | sh",
    "$(printf '\\x72eboot')",
    "python3 -c 'import os; os.system(\"reb\" + \"oot\")'",
    "cp /sbin/reb* /tmp/rb; /tmp/rb",
    "rm --recursive --force /",
]


def test_blacklist_catches_what_it_claims_and_the_known_bypasses_are_documented() -> None:
    for argv, shell in CAUGHT:
        assert blacklist.check(blacklist.DEFAULT_BLACKLIST, argv, shell), (argv, shell)
    docs = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    for shell in BYPASSES:
        assert blacklist.check(blacklist.DEFAULT_BLACKLIST, None, shell) is None, f"now caught: {shell}"
        assert f"`{shell}`" in docs, f"docs/security.md does not list the bypass {shell!r}"


def test_general_refuses_caught_commands_before_any_scout_sees_them(
    secfleet: Fleet, keyfor: Callable[[str], KeyPair]
) -> None:
    # The target is a RawScout: should a spelling slip through, it would only be recorded.
    sink = accepted_raw_scout(secfleet, "sink1", keyfor("sink1"))
    for argv, shell in CAUGHT:
        command: dict[str, Any] = {"argv": argv} if argv else {"shell": shell}
        job = secfleet.api("POST", "/api/v1/jobs?wait=5", {"kind": "cmd", "target": {"hosts": "sink1"},
                                                           "command": command, "timeout": 5})
        host = job["hosts"]["sink1"]
        assert host["state"] == "refused" and "General's blacklist" in host["error"], (argv, shell, host)
    ping = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "sink1"}})["job"]
    first = sink.next_message()  # nothing came before the ping's task
    assert isinstance(first, messages.Task) and first.job_id == ping, first
    sink.close()


def test_scout_checks_the_blacklist_itself(victim: Victim) -> None:
    """A General that sends a blacklisted command anyway (here: a RawGeneral) is refused by the scout."""
    conn = victim.general.accept()
    conn.send(messages.ConfigUpdate(blacklist=["troop-probe-forbidden"]))
    marker = victim.marker("blacklisted")
    for shell in (f"touch {marker}; troop-probe-forbidden", f"sh -c 'touch {marker}; troop-probe-forbidden'",
                  f"bash -c \"sleep 0; troop-probe-forbidden\"; touch {marker}"):
        task = messages.Task(task_id=f"bl-{len(shell)}", job_id="bl", kind="cmd", timeout=5,
                             command=messages.Command(shell=shell))
        conn.send(task)
        result = conn.result_of(task.task_id)
        assert result.state == "refused" and "scout's blacklist" in (result.error or ""), result
    conn.close()
    assert not marker.exists()


def token(fleet: Fleet, name: str, role: str, *extra: str) -> str:
    code, made = run_json(fleet, "token", "create", name, "--role", role, *extra)
    assert code == 0, made
    return str(made["token"])


def audit_since(fleet: Fleet, watermark: int) -> list[tuple[str, str, str, bool]]:
    rows = db_rows(fleet, "SELECT actor, action, target, allowed FROM audit WHERE id > ? ORDER BY id", watermark)
    return [(a, b, c, bool(d)) for a, b, c, d in rows]


@pytest.fixture
def watermark(secfleet: Fleet) -> int:
    return int(db_rows(secfleet, "SELECT COALESCE(MAX(id), 0) FROM audit")[0][0])


def test_roles_and_target_limits_hold_and_are_audited(secfleet: Fleet, watermark: int) -> None:
    ops = token(secfleet, "ops-web", "operator", "--targets", "web*")
    viewer = token(secfleet, "viewer-sec", "viewer")
    marker_jobs = {j["job"] for j in secfleet.api("GET", "/api/v1/jobs?limit=1000")["jobs"]}

    allowed = secfleet.cli("ping", "web1", token=ops)
    assert allowed.returncode == 0, allowed.stderr
    for argv in (["ping", "db1"], ["ping", "*"], ["ping", "web1,db1"], ["cmd", "db1", "--", "true"],
                 ["ping", "*", "--tag", "db"]):
        refused = secfleet.cli(*argv, token=ops)
        assert refused.returncode == 2 and "403" in refused.stderr and "db1" in refused.stderr, (argv, refused.stderr)
    for method, path, body in (("POST", "/api/v1/keys/accept", b'{"all": true}'), ("POST", "/api/v1/keys/rotate", None),
                               ("POST", "/api/v1/tokens", b'{"name": "x", "role": "admin"}'),
                               ("GET", "/api/v1/tokens", None)):
        status, answer, _ = call(secfleet, method, path, body, token=ops)
        assert status == 403 and "operator role" in answer["error"], (path, answer)
    refused = secfleet.cli("ping", "web1", token=viewer)
    assert refused.returncode == 2 and "403" in refused.stderr
    assert secfleet.cli("job", "list", token=viewer).returncode == 0

    new_jobs = {j["job"] for j in secfleet.api("GET", "/api/v1/jobs?limit=1000")["jobs"]} - marker_jobs
    assert len(new_jobs) == 1  # only the allowed ping ran

    rows = audit_since(secfleet, watermark)
    expected = [
        ("admin", "token.create", "ops-web", True),
        ("admin", "token.create", "viewer-sec", True),
        ("ops-web", "job.ping", "'web1'", True),
        ("ops-web", "job.ping", "'db1'", False),
        ("ops-web", "job.ping", "'*'", False),
        ("ops-web", "job.ping", "'web1,db1'", False),
        ("ops-web", "job.cmd", "'db1'", False),
        ("ops-web", "job.ping", "'*' --tag db", False),
        ("ops-web", "denied POST /api/v1/keys/accept", "", False),
        ("ops-web", "denied POST /api/v1/keys/rotate", "", False),
        ("ops-web", "denied POST /api/v1/tokens", "", False),
        ("ops-web", "denied GET /api/v1/tokens", "", False),
        ("viewer-sec", "denied POST /api/v1/jobs", "", False),
    ]
    assert rows == expected, rows


def test_use_of_a_revoked_or_expired_token_is_audited(secfleet: Fleet, watermark: int) -> None:
    stolen = token(secfleet, "stolen-ops", "operator")
    assert secfleet.cli("token", "revoke", "stolen-ops").returncode == 0
    status, _, _ = call(secfleet, "POST", "/api/v1/jobs", b'{"kind": "ping"}', token=stolen)
    assert status == 401
    rows = audit_since(secfleet, watermark)
    assert any(actor == "stolen-ops" and not allowed for actor, _action, _target, allowed in rows), rows
