"""Item 2, stale or foreign keys: a frame under a key the receiver no longer holds, under
another host's key, or from an earlier connection is refused; nothing runs; the scout
reconnects (a fresh handshake) rather than carrying on."""

from __future__ import annotations

from collections.abc import Callable

from tests.security.conftest import Victim
from tests.security.rawscout import accepted_raw_scout, log_text, wait_until
from troop.localfleet import Fleet
from troop.protocol import messages
from troop.protocol.crypto import KeyPair, new_session_key


def test_frame_under_the_key_before_the_previous_one_is_refused(victim: Victim) -> None:
    """The scout keeps the previous receive key for one rotation (frames in flight), no older."""
    conn = victim.general.accept()
    k1, k2, k3 = conn.k, new_session_key(), new_session_key()
    conn.send(messages.Rekey(key_id=2, wrapped_key=conn.scout_key.encrypt(k2)))
    assert conn.wait_for(lambda m: isinstance(m, messages.RekeyAck)).key_id == 2
    conn.channel.set_send_key(2, k2)
    current = victim.marker("rotation-current")
    task = victim.task(current)
    conn.send(task)
    assert conn.result_of(task.task_id).state == "succeeded"

    conn.send(messages.Rekey(key_id=3, wrapped_key=conn.scout_key.encrypt(k3)))
    assert conn.wait_for(lambda m: isinstance(m, messages.RekeyAck)).key_id == 3
    previous = victim.marker("rotation-previous")  # still under key 2: a frame sealed before the switch
    task = victim.task(previous)
    conn.send(task)
    assert conn.result_of(task.task_id).state == "succeeded"

    conn.channel.set_send_key(1, k1)  # the key before the previous one
    stale = victim.marker("rotation-stale")
    conn.send(victim.task(stale))
    assert conn.closed_by_peer()
    conn.close()
    assert "SealError: unknown key id 1" in log_text(victim.log)

    # The scout starts over with a new handshake; nothing sealed under key 1 ever ran.
    conn = victim.general.accept()
    control = victim.marker("rotation-control")
    task = victim.task(control)
    conn.send(task)
    assert conn.result_of(task.task_id).state == "succeeded"
    conn.close()
    assert (victim.runs(current), victim.runs(previous), victim.runs(stale), victim.runs(control)) == (1, 1, 0, 1)


def test_frame_for_another_scout_or_under_a_wrong_key_is_refused(victim: Victim) -> None:
    marker = victim.marker("foreign-key")
    # Sealed under this scout's own key, but for another hostname (the AAD names the scout).
    conn = victim.general.accept()
    conn.send_body(conn.make_channel(conn.k, conn.key_id, hostname="someone-else").seal(victim.task(marker)))
    assert conn.closed_by_peer()
    conn.close()
    # The right key id and hostname, but a key that is not this scout's.
    conn = victim.general.accept()
    conn.send_body(conn.make_channel(new_session_key(), conn.key_id).seal(victim.task(marker)))
    assert conn.closed_by_peer()
    conn.close()
    # A key this scout was re-keyed to, presented under another key id.
    conn = victim.general.accept()
    k2 = new_session_key()
    conn.send(messages.Rekey(key_id=2, wrapped_key=conn.scout_key.encrypt(k2)))
    conn.wait_for(lambda m: isinstance(m, messages.RekeyAck))
    conn.channel.set_send_key(1, k2)
    conn.send(victim.task(marker))
    assert conn.closed_by_peer()
    conn.close()
    conn = victim.general.accept()  # and it came back for a new handshake each time
    control = victim.marker("foreign-control")
    task = victim.task(control)
    conn.send(task)
    assert conn.result_of(task.task_id).state == "succeeded"
    conn.close()
    assert victim.runs(marker) == 0 and victim.runs(control) == 1


def test_result_sealed_with_another_hosts_key_is_refused(secfleet: Fleet, keyfor: Callable[[str], KeyPair]) -> None:
    alice = accepted_raw_scout(secfleet, "alice", keyfor("alice"))
    bob = accepted_raw_scout(secfleet, "bob", keyfor("bob"))
    job_id = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "alice,bob"}, "timeout": 30})[
        "job"
    ]
    task_a, task_b = alice.wait_task(job_id), bob.wait_task(job_id)
    # Bob's key and name, Bob's task, on Alice's connection: it does not open under Alice's key.
    alice.send_body(bob.seal(messages.Result(task_id=task_b.task_id, state="succeeded", stdout=b"via-alice")))
    assert alice.closed_by_peer()
    # Alice's task, sealed with Bob's key, sent by Bob: the General opens Bob's frames as Bob's,
    # and a scout answering for a task that is not its own is ignored.
    bob.send(messages.Result(task_id=task_a.task_id, state="succeeded", stdout=b"bob-for-alice"))
    bob.send(messages.Result(task_id=task_b.task_id, state="succeeded", stdout=b"bob"))
    job = wait_until(
        lambda: (j := secfleet.api("GET", f"/api/v1/jobs/{job_id}?wait=5"))["state"] == "done" and j, 15, "the job"
    )
    assert job["hosts"]["bob"]["stdout"] == "bob" and job["hosts"]["bob"]["state"] == "succeeded"
    assert job["hosts"]["alice"]["state"] == "lost" and job["hosts"]["alice"]["stdout"] == ""
    assert "SealError" in log_text(secfleet.root / "general.log")
    bob.close()
    alice.close()


def test_result_sealed_on_an_earlier_connection_is_refused(
    secfleet: Fleet, keyfor: Callable[[str], KeyPair]
) -> None:
    """C is new on every connection: a frame captured on one never opens on the next."""
    key = keyfor("carol")
    first = accepted_raw_scout(secfleet, "carol", key)
    job_id = secfleet.api("POST", "/api/v1/jobs", {"kind": "ping", "target": {"hosts": "carol"}, "timeout": 30})[
        "job"
    ]
    task = first.wait_task(job_id)
    captured = first.seal(messages.Result(task_id=task.task_id, state="succeeded", stdout=b"old-key"))
    second = accepted_raw_scout(secfleet, "carol", key)  # the General closes the first connection
    assert first.closed_by_peer()
    second.send_body(captured)
    assert second.closed_by_peer()
    host = secfleet.api("GET", f"/api/v1/jobs/{job_id}")["hosts"]["carol"]
    assert host["stdout"] == "" and host["state"] != "succeeded", host
    first.close()
    second.close()
