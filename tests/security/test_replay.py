"""Item 3, replay: a captured task resent at once, after it ran, on a later connection, or
outside the 120 s window never runs again; clock skew inside the window is accepted; a
duplicated result is stored once and is not taken for a late one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.security.conftest import Victim
from tests.security.rawscout import accepted_raw_scout, db_rows, log_text, wait_until
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.channel import SCOUT_TO_GENERAL, SealedChannel, now_ms
from troop.protocol.crypto import KeyPair

WINDOW_MS = 120_000


def stored_counts(fleet: Fleet, job_id: str) -> dict[str, int]:
    listed = [j for j in fleet.api("GET", "/api/v1/jobs?limit=50")["jobs"] if j["job"] == job_id]
    return dict(listed[0]["counts"]) if listed else {}


def test_task_replayed_at_once_after_it_ran_and_on_a_new_connection_runs_once(victim: Victim) -> None:
    marker = victim.marker("replay-once")
    conn = victim.general.accept()
    task = victim.task(marker)
    body = conn.send(task)
    conn.send_body(body)  # the same frame again at once: same sequence number
    assert conn.closed_by_peer()
    conn.close()
    wait_until(lambda: victim.runs(marker) == 1, 10, "the first copy to run")
    conn = victim.general.accept()

    marker2 = victim.marker("replay-after")
    task2 = victim.task(marker2)
    body2 = conn.send(task2)
    assert conn.result_of(task2.task_id).state == "succeeded"
    conn.send_body(body2)  # after it ran
    assert conn.closed_by_peer()
    conn.close()

    conn = victim.general.accept()
    conn.send_body(body2)  # on a later connection: sealed under that connection's key
    assert conn.closed_by_peer()
    conn.close()

    conn = victim.general.accept()
    conn.send(task2)  # the same task id, freshly and validly sealed: a task id never runs twice
    control = victim.task(victim.marker("replay-control"))
    conn.send(control)
    seen = []
    conn.wait_for(lambda m: seen.append(m) or (isinstance(m, messages.Result) and m.task_id == control.task_id))
    assert not [m for m in seen if isinstance(m, messages.Ack | messages.Result) and m.task_id == task2.task_id]
    conn.close()
    assert victim.runs(marker) == 1 and victim.runs(marker2) == 1
    text = log_text(victim.log)
    assert "ReplayError" in text and "ignored a task id seen before" in text


@pytest.mark.parametrize("skew_ms", [-(WINDOW_MS + 1000), WINDOW_MS + 1000])
def test_task_outside_the_time_window_is_refused(victim: Victim, skew_ms: int) -> None:
    marker = victim.marker(f"stale{skew_ms}")
    conn = victim.general.accept()
    conn.send_body(conn.make_channel(conn.k, conn.key_id, skew_ms=skew_ms).seal(victim.task(marker)))
    assert conn.closed_by_peer()
    conn.close()
    assert "StaleError" in log_text(victim.log)
    conn = victim.general.accept()  # flush: anything that was going to run has run by the next result
    control = victim.task(victim.marker(f"stale-control{skew_ms}"))
    conn.send(control)
    assert conn.result_of(control.task_id).state == "succeeded"
    conn.close()
    assert victim.runs(marker) == 0


@pytest.mark.parametrize("skew_ms", [-(WINDOW_MS - 10_000), WINDOW_MS - 10_000])
def test_clock_skew_inside_the_window_is_accepted(victim: Victim, skew_ms: int) -> None:
    marker = victim.marker(f"skew{skew_ms}")
    conn = victim.general.accept()
    task = victim.task(marker)
    conn.send_body(conn.make_channel(conn.k, conn.key_id, skew_ms=skew_ms).seal(task))
    assert conn.result_of(task.task_id).state == "succeeded"
    conn.close()
    assert victim.runs(marker) == 1


def test_duplicated_result_is_stored_once_and_not_late(secfleet: Fleet, keyfor: Callable[[str], KeyPair]) -> None:
    raw = accepted_raw_scout(secfleet, "dup1", keyfor("dup1"))
    job_id = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "dup1"}, "timeout": 30})["job"]
    task = raw.wait_task(job_id)
    raw.send(messages.Ack(task_id=task.task_id))
    raw.send(messages.Result(task_id=task.task_id, state="succeeded", stdout=b"first"))
    # The same result again, with a fresh sequence number (a scout resending from its outbox),
    # then a different one for the same task: the first answer stands.
    raw.send(messages.Result(task_id=task.task_id, state="succeeded", stdout=b"first"))
    raw.send(messages.Result(task_id=task.task_id, state="failed", stdout=b"second", exit_code=1))
    # A heartbeat after them: once the General has it, it has seen the results.
    raw.send(messages.Heartbeat(ts=now_ms()))
    job = secfleet.api("GET", f"/api/v1/jobs/{job_id}?wait=5")
    assert job["state"] == "done"
    host = job["hosts"]["dup1"]
    assert (host["state"], host["stdout"], host["late"]) == ("succeeded", "first", False), host
    # The store counts it once. (Polled: the store may lag the answer above, a race pinned by
    # test_job_is_reported_done_only_after_its_rows_are_stored.)
    counts = wait_until(lambda: stored_counts(secfleet, job_id) == {"succeeded": 1}, 5, "the stored result")
    assert counts
    raw.close()
    assert secfleet.api("GET", f"/api/v1/jobs/{job_id}")["hosts"]["dup1"]["stdout"] == "first"


@pytest.mark.parametrize(("skew_ms", "taken"), [(WINDOW_MS + 1000, False), (-(WINDOW_MS - 10_000), True)])
def test_general_applies_the_same_window_to_results(
    secfleet: Fleet, keyfor: Callable[[str], KeyPair], skew_ms: int, taken: bool
) -> None:
    raw = accepted_raw_scout(secfleet, "skewed1", keyfor("skewed1"))
    job_id = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "skewed1"}, "timeout": 30})[
        "job"
    ]
    task = raw.wait_task(job_id)
    skewed = SealedChannel("skewed1", SCOUT_TO_GENERAL, raw.c, b"\0" * 32, clock=lambda: now_ms() + skew_ms)
    raw.send_body(skewed.seal(messages.Result(task_id=task.task_id, state="succeeded", stdout=b"skewed")))
    if taken:
        host = wait_until(
            lambda: (h := secfleet.api("GET", f"/api/v1/jobs/{job_id}")["hosts"]["skewed1"])["state"] == "succeeded"
            and h,
            10,
            "the skewed result",
        )
        assert host["stdout"] == "skewed"
    else:
        assert raw.closed_by_peer()
        assert "StaleError" in log_text(secfleet.root / "general.log")
        host = secfleet.api("GET", f"/api/v1/jobs/{job_id}")["hosts"]["skewed1"]
        assert host["stdout"] == "" and host["state"] == "lost"
    raw.close()


def test_job_is_reported_done_only_after_its_rows_are_stored(
    secfleet: Fleet, keyfor: Callable[[str], KeyPair]
) -> None:
    """docs/architecture.md: 'A job is reported done only after its rows are committed.'"""
    raw = accepted_raw_scout(secfleet, "quick1", keyfor("quick1"))
    for _ in range(5):
        job_id = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "quick1"}})["job"]
        raw.send(messages.Result(task_id=raw.wait_task(job_id).task_id, state="succeeded"))
        job = secfleet.api("GET", f"/api/v1/jobs/{job_id}?wait=10")
        assert job["state"] == "done"
        # What the caller was just told is what the store holds.
        assert db_rows(secfleet, "SELECT state FROM jobs WHERE id = ?", job_id) == [("done",)]
        assert db_rows(secfleet, "SELECT state FROM job_hosts WHERE job_id = ?", job_id) == [("succeeded",)]
    raw.close()
