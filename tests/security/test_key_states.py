"""Item 4: pending, rejected, denied and deleted keys get no tasks and may send nothing but the
handshake; deleting a host ends its session without re-authenticating anyone else."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import msgspec
import pytest

from tests.integration.conftest import run_json
from tests.security.rawscout import RawScout, accepted_raw_scout, log_text, wait_until
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.channel import now_ms
from troop.protocol.crypto import KeyPair
from troop.protocol.frames import KIND_SEALED, encode_frame

REAL = ["k1", "k2", "k3"]

# One of every sealed message type, as a scout (or someone pretending) might send it.
EVERY_SEALED: list[msgspec.Struct] = [
    messages.Heartbeat(ts=0),
    messages.Ack(task_id="t"),
    messages.Output(task_id="t", stream="stdout", data=b"x"),
    messages.Result(task_id="t", state="succeeded"),
    messages.RekeyAck(key_id=1),
    messages.FactsUpdate(facts=messages.Facts(os="linux", tags=["evil"])),
    messages.Task(task_id="t", job_id="j", kind="cmd", timeout=1, command=messages.Command(argv=["true"])),
    messages.Cancel(task_id="t"),
    messages.Rekey(key_id=2, wrapped_key=b"x" * 32),
    messages.ConfigUpdate(blacklist=[]),
]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A General without auto_accept; k1..k3 accepted by the operator."""
    env = {"TROOP_RECONNECT_MAX": "2", "TROOP_KEY_BITS": "2048"}
    fleet = Fleet(tmp_path_factory.mktemp("strict") / "fleet", env=env)
    try:
        fleet.start_general(auto_accept=False)
        for name in REAL:
            fleet.start_scout(name)
        wait_until(lambda: set(REAL) <= set(fleet.api("GET", "/api/v1/keys")["pending"]), 30, "pending scouts")
        assert fleet.cli("key", "accept", "--all").returncode == 0
        fleet.wait_online(REAL)
        yield fleet
    finally:
        fleet.stop()


def online_lines(fleet: Fleet) -> list[str]:
    return re.findall(r"scout online host=(\S+) peer=(\S+)", log_text(fleet.root / "general.log"))


def test_pending_scout_gets_no_task_and_may_send_nothing(strict: Fleet, keyfor: Callable[[str], KeyPair]) -> None:
    key = keyfor("pend1")
    raw = RawScout(strict.scout_port, "pend1", key)
    welcome, _ = raw.handshake()
    assert welcome.status == "pending" and not welcome.wrapped_key  # no key: nothing can be sealed for it
    raw.close()
    code, _job = run_json(strict, "ping", "*")
    assert code == 0 and "pend1" not in _job["hosts"]
    result = strict.cli("ping", "pend1")
    assert result.returncode == 2 and "not accepted" in result.stderr

    jobs_before = strict.api("GET", "/api/v1/jobs?limit=100")["jobs"]
    for msg in EVERY_SEALED:
        raw = RawScout(strict.scout_port, "pend1", key)
        welcome, channel = raw.handshake()
        assert welcome.status == "pending"
        raw.send_raw(encode_frame(KIND_SEALED, channel.seal(msg)))  # sealed under its own C: still refused
        assert raw.closed_by_peer(), type(msg).__name__
        raw.close()
    refused = log_text(strict.root / "general.log").count("a pending scout may not send anything")
    assert refused >= len(EVERY_SEALED)
    assert strict.api("GET", "/api/v1/jobs?limit=100")["jobs"] == jobs_before
    hosts = {h["hostname"]: h for h in strict.api("GET", "/api/v1/hosts")["hosts"]}
    assert hosts["pend1"]["state"] == "pending" and "evil" not in hosts["pend1"]["tags"]


def test_rejected_and_denied_keys_cannot_get_past_the_handshake(
    strict: Fleet, keyfor: Callable[[str], KeyPair]
) -> None:
    raw = RawScout(strict.scout_port, "rej1", keyfor("rej1"))
    assert raw.handshake()[0].status == "pending"
    raw.close()
    assert strict.cli("key", "reject", "rej1").returncode == 0
    assert strict.cli("key", "accept", "rej1").returncode != 0  # rejected stays rejected

    k1_before = {h["hostname"]: h for h in strict.api("GET", "/api/v1/hosts")["hosts"]}["k1"]
    for name, key, status in (("rej1", keyfor("rej1"), "rejected"), ("k1", keyfor("k1-impostor"), "denied")):
        raw = RawScout(strict.scout_port, name, key)
        welcome, channel = raw.handshake()
        assert welcome.status == status and not welcome.wrapped_key
        try:  # the General hangs up; anything sent regardless goes nowhere
            raw.send_raw(encode_frame(KIND_SEALED, channel.seal(messages.Result(task_id="t", state="succeeded"))))
        except OSError:
            pass
        assert raw.closed_by_peer()
        raw.close()
    result = strict.cli("ping", "rej1")
    assert result.returncode == 2 and "not accepted" in result.stderr
    # The impostor did not replace k1's key, and the real k1 still answers.
    k1_after = {h["hostname"]: h for h in strict.api("GET", "/api/v1/hosts")["hosts"]}["k1"]
    assert k1_after["fingerprint"] == k1_before["fingerprint"] and k1_after["online"]
    assert "k1" in strict.api("GET", "/api/v1/keys")["denied"]
    code, job = run_json(strict, "ping", "k1")
    assert code == 0 and job["hosts"]["k1"]["state"] == "succeeded"


def test_deleting_a_host_ends_its_session_without_reauth_of_the_others(
    strict: Fleet, keyfor: Callable[[str], KeyPair]
) -> None:
    raw = accepted_raw_scout(strict, "del1", keyfor("del1"))
    raw.send(messages.Heartbeat(ts=now_ms()))
    before = [line for line in online_lines(strict) if line[0] in REAL]
    assert {host for host, _peer in before} == set(REAL)
    scout_logs = {n: log_text(strict.root / f"scout-{n}.log").count("connected to the General") for n in REAL}

    assert strict.cli("key", "delete", "del1").returncode == 0
    assert raw.closed_by_peer(), "the deleted host's session stayed up"
    raw.close()
    wait_until(lambda: "why=\"key deleted for del1\"" in log_text(strict.root / "general.log"), 5, "the rotation")

    code, job = run_json(strict, "ping", ",".join(REAL))  # the others took the new key without a handshake
    assert code == 0, job
    assert [line for line in online_lines(strict) if line[0] in REAL] == before
    assert {n: log_text(strict.root / f"scout-{n}.log").count("connected to the General") for n in REAL} == scout_logs
    assert "del1" not in strict.api("GET", "/api/v1/keys")["accepted"]
    again = RawScout(strict.scout_port, "del1", keyfor("del1"))  # a deleted host starts over: pending
    assert again.handshake()[0].status == "pending"
    again.close()
