"""Item 1, tampering: one byte changed anywhere in a sealed frame, either way, is refused at
AEAD verification, logged, and nothing runs or is stored."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

from tests.security.conftest import Victim
from tests.security.rawscout import accepted_raw_scout, flip, log_text, sample_positions, wait_until
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.crypto import KeyPair
from troop.protocol.frames import DEFAULT_MAX_BODY, HEADER_SIZE, KIND_SEALED, encode_frame


def drops(fleet: Fleet, host: str) -> int:
    """How many connections of `host` the General closed on bad input."""
    text = log_text(fleet.root / "general.log")
    return len(re.findall(rf"closed scout connection on bad input host={re.escape(host)} ", text))


def test_tampered_result_is_refused_logged_and_not_stored(
    secfleet: Fleet, keyfor: Callable[[str], KeyPair]
) -> None:
    key = keyfor("tamper1")
    raw = accepted_raw_scout(secfleet, "tamper1", key)
    job_id = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "tamper1"}, "timeout": 60})[
        "job"
    ]
    task = raw.wait_task(job_id)
    result = messages.Result(task_id=task.task_id, state="succeeded", stdout=b"from-tamper1")
    before = drops(secfleet, "tamper1")

    positions = sample_positions(len(raw.seal(result)))
    assert len(positions) >= 60
    for position in positions:  # every sampled byte of the sealed body, each on a fresh connection
        conn = raw if position == positions[0] else accepted_raw_scout(secfleet, "tamper1", key)
        conn.send_body(flip(conn.seal(result), position))
        assert conn.closed_by_peer(), f"connection stayed open after a flip at byte {position}"
        conn.close()

    # The frame header too: a flip there is a bad magic, version or kind, or a length that is
    # over the cap or cuts the body short; a longer length under the cap just waits for bytes
    # that never come, and the frame is never complete.
    expected_drops = len(positions)
    for position in range(HEADER_SIZE):
        conn = accepted_raw_scout(secfleet, "tamper1", key)
        frame = flip(encode_frame(KIND_SEALED, conn.seal(result)), position)
        length = int.from_bytes(frame[4:8], "big")
        conn.send_raw(frame)
        original = len(frame) - HEADER_SIZE
        if original < length <= DEFAULT_MAX_BODY:
            conn.sock.shutdown(socket.SHUT_WR)
        else:
            expected_drops += 1
        assert conn.closed_by_peer(), f"connection stayed open after a flip at header byte {position}"
        conn.close()

    wait_until(lambda: drops(secfleet, "tamper1") - before >= expected_drops, 10, "one log line per refused frame")
    assert drops(secfleet, "tamper1") - before == expected_drops
    job = secfleet.api("GET", f"/api/v1/jobs/{job_id}")
    host = job["hosts"]["tamper1"]
    assert host["state"] == "lost" and host["stdout"] == "", host  # unanswered: no tampered result taken

    # The same frame untouched is taken (so the loop above could have seen a tampered one pass).
    conn = accepted_raw_scout(secfleet, "tamper1", key)
    conn.send(result)
    host = wait_until(
        lambda: (h := secfleet.api("GET", f"/api/v1/jobs/{job_id}")["hosts"]["tamper1"])["state"] == "succeeded" and h,
        10,
        "the untampered result",
    )
    assert host["stdout"] == "from-tamper1" and host["late"] is True
    conn.close()


def test_tampered_task_is_refused_and_never_runs(victim: Victim) -> None:
    marker = victim.marker("tampered-task")
    conn = victim.general.accept()
    task = victim.task(marker)
    positions = sample_positions(len(conn.channel.seal(task)))
    for position in positions:
        if position != positions[0]:
            conn = victim.general.accept()  # the scout reconnects after each refusal
        conn.send_body(flip(conn.channel.seal(task), position))
        assert conn.closed_by_peer(), f"the scout kept the connection after a flip at byte {position}"
        conn.close()

    # Control: the same task, untampered, runs (under another marker).
    conn = victim.general.accept()
    control_marker = victim.marker("tampered-control")
    control = victim.task(control_marker)
    conn.send(control)
    assert conn.result_of(control.task_id).state == "succeeded"
    conn.close()
    assert victim.runs(control_marker) == 1
    assert victim.runs(marker) == 0, "a tampered task ran"
    refused = len(re.findall(r"closed connection to \S+: SealError", log_text(victim.log)))
    assert refused >= len(positions), refused


def test_tampered_frames_leave_other_scouts_alone(secfleet: Fleet) -> None:
    code = secfleet.cli("ping", "web1,web2,db1")
    assert code.returncode == 0, code.stdout + code.stderr
