"""Scale-out as a user sees it through the API: 3 Generals (A, B, C) on one PostgreSQL store and
one NATS bus, 45 scouts spread over them (see troop.general.cluster for the design).

The tests share one cluster (tests/cluster/conftest.py), healed before each one. They run in
file order; the ones that kill a General come last.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import SCOUTS
from tests.cluster.harness import FINAL, Cluster, summary, wait_for

A, B, C = 0, 1, 2

pytestmark = pytest.mark.timeout(240)  # the first test also pays for starting 49 processes


def cmd(shell: str, *, hosts: str = "*", timeout: float = 20, stream: bool = False) -> dict[str, Any]:
    return {
        "kind": "cmd",
        "target": {"hosts": hosts},
        "command": {"shell": shell},
        "timeout": timeout,
        "stream": stream,
    }


def ping(hosts: str = "*", timeout: float = 10) -> dict[str, Any]:
    return {"kind": "ping", "target": {"hosts": hosts}, "timeout": timeout}


def view(job: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What a user compares between Generals: per host state, exit code, output and error."""
    return {
        name: (h["state"], h["exit_code"], h["stdout"], h["stderr"], h["error"]) for name, h in job["hosts"].items()
    }


def assert_all_succeeded(job: dict[str, Any], names: list[str], stdout: str | None = None) -> None:
    """Job done, exactly these hosts, every one succeeded (with stdout `stdout.format(n=host)` when given)."""
    assert job["state"] == "done", summary(job)
    assert sorted(job["hosts"]) == sorted(names), f"hosts differ: {summary(job)}"
    bad = {n: h for n, h in job["hosts"].items() if h["state"] != "succeeded"}
    assert not bad, f"{len(bad)} host(s) did not succeed: {summary(job)}"
    if stdout is not None:
        wrong = {n: h["stdout"] for n, h in job["hosts"].items() if h["stdout"] != stdout.format(n=n)}
        assert not wrong, f"wrong stdout: {dict(list(wrong.items())[:6])}"


def running_on_every_host(cluster: Cluster, via: int, job_id: str, limit: float) -> None:
    """Wait until every host of the job is running as General `via` sees it, at most `limit` s:
    the faults below must strike while every task runs, or they test nothing."""
    deadline = time.monotonic() + limit
    while True:
        job = cluster.job(via, job_id)
        if all(h["state"] == "running" for h in job["hosts"].values()):
            return
        assert time.monotonic() < deadline, f"not every host running after {limit}s: {summary(job)}"
        time.sleep(0.1)


# ---------------------------------------------------------------------- presence
def test_every_general_sees_every_scout(cluster: Cluster) -> None:
    """GET /api/v1/hosts on any General: every scout online, with the id of the General it is on;
    GET /api/v1/generals: the three Generals, alive, with their addresses and scout counts."""
    where = cluster.placement()
    for i in (A, B, C):
        cluster.wait_online(SCOUTS, via=i, timeout=15)
    gids = [cluster.gid(i) for i in (A, B, C)]
    assert all(gids), f"/api/v1/health names no General id: {gids}"
    assert len(set(gids)) == 3, gids
    truth = {n: None if (w := where[n]) is None else gids[w] for n in SCOUTS}
    for i in (A, B, C):
        hosts = {h["hostname"]: h for h in cluster.hosts(i)}
        wrong = {n: (hosts[n].get("general"), truth[n]) for n in SCOUTS if hosts[n].get("general") != truth[n]}
        assert not wrong, f"General {'ABC'[i]} names the wrong General (seen, true) for {len(wrong)} host(s): {wrong}"

    def counts_right() -> bool:
        for i in (A, B, C):
            listed = cluster.generals_view(i)
            assert listed is not None, "GET /api/v1/generals is missing"
            alive = {g["id"]: g for g in listed if g["alive"]}
            for j, gid in enumerate(gids):
                g = alive.get(gid)
                assert g is not None, f"General {'ABC'[i]} does not list {'ABC'[j]} ({gid}) as alive: {listed}"
                assert g["api"] == f"127.0.0.1:{cluster.generals[j].api_port}", g
                assert g["scouts"] == f"127.0.0.1:{cluster.generals[j].scout_port}", g
                if g["online"] != len(cluster.on(j)):
                    return False
        return True

    wait_for(counts_right, 10, "GET /api/v1/generals to count each General's scouts")  # refreshed every beat


# ---------------------------------------------------------------------- jobs across Generals
def test_cross_general_job(cluster: Cluster) -> None:
    on = {i: cluster.on(i) for i in (A, B, C)}
    assert all(on.values()), on
    cluster.wait_online(SCOUTS, via=A, timeout=15)

    job = cluster.submit(A, cmd("echo out-$SCOUT_NAME"), wait=30)
    assert_all_succeeded(job, SCOUTS, "out-{n}\n")
    for i in (B, C):
        other = cluster.job(i, job["job"])
        assert other["state"] == "done", f"via {'ABC'[i]}: {summary(other)}"
        assert view(other) == view(job), f"via {'ABC'[i]} the job differs: {summary(other)}"

    # Streaming: output lines of scouts on B and C reach a subscriber on A.
    started = cluster.submit(A, cmd("echo one-$SCOUT_NAME; sleep 0.5; echo two-$SCOUT_NAME", stream=True))
    events = cluster.events(A, started["job"], timeout=30)
    assert events[0]["event"] == "job" and events[-1]["event"] == "done", [e["event"] for e in events[:3]]
    lines: dict[str, str] = {}
    for e in events:
        if e["event"] == "output" and e["stream"] == "stdout":
            lines[e["host"]] = lines.get(e["host"], "") + e["data"]
    for i in (B, C):
        missing = [n for n in on[i] if lines.get(n) != f"one-{n}\ntwo-{n}\n"]
        assert not missing, f"no (or wrong) streamed output from scouts on {'ABC'[i]}: {missing}; got {lines}"
    assert_all_succeeded(events[-1]["job"], SCOUTS, "one-{n}\ntwo-{n}\n")


def test_files_through_another_general(cluster: Cluster, tmp_path: Path) -> None:
    """A file pushed through A lands on scouts held by B and C (from the one FileManager), and a
    file is read through B from a scout held by C."""
    os.chmod(tmp_path, 0o755)
    src = tmp_path / "app.conf"
    src.write_text("listen 8080\n")
    for i in (B, C):
        name = cluster.on(i)[0]
        dest = tmp_path / f"{name}.conf"
        result = cluster.cli(A, "file", "push", name, str(src), str(dest))
        assert result.returncode == 0, result.stdout + result.stderr
        assert dest.read_text() == "listen 8080\n"
    name = cluster.on(C)[0]
    result = cluster.cli(B, "file", "read", name, str(tmp_path / f"{name}.conf"))
    assert result.returncode == 0 and "listen 8080" in result.stdout, result.stdout + result.stderr


def test_cli_through_each_general(cluster: Cluster) -> None:
    """`troop ping '*'` through B and C reaches every scout (exit status 0)."""
    for i in (B, C):
        cluster.wait_online(SCOUTS, via=i, timeout=15)
        result = cluster.cli(i, "ping", "*", "--timeout", "10")
        assert result.returncode == 0, f"via {'ABC'[i]}: {result.stdout[-1500:]}{result.stderr[-1500:]}"


# ---------------------------------------------------------------------- NATS outage
def test_nats_outage(cluster: Cluster) -> None:
    pids = [g.proc.pid for g in cluster.generals if g.proc is not None]
    on_a, on_b = cluster.on(A), cluster.on(B)
    cluster.wait_online(SCOUTS, via=A, timeout=15)
    cluster.nats.kill()

    # A keeps serving its own scouts.
    job = cluster.submit(A, cmd("echo local-$SCOUT_NAME", hosts=",".join(on_a), timeout=10), wait=30)
    assert_all_succeeded(job, on_a, "local-{n}\n")

    # A task for a scout on B fails at once, with an error that says why.
    t0 = time.monotonic()
    job = cluster.submit(A, cmd("echo remote", hosts=on_b[0], timeout=20), wait=40)
    took = time.monotonic() - t0
    host = job["hosts"][on_b[0]]
    assert took < 5, f"a task for a scout on an unreachable General took {took:.1f}s: {summary(job)}"
    assert job["state"] == "done" and host["state"] != "succeeded", summary(job)
    assert host["error"] and re.search(r"bus|general|nats", host["error"], re.I), summary(job)

    # NATS back on the same port: everything resumes, no General restarted.
    cluster.nats.start()
    deadline = time.monotonic() + 15
    while True:
        job = cluster.submit(A, cmd("echo back-$SCOUT_NAME", timeout=3), wait=20)
        if all(h["state"] == "succeeded" for h in job["hosts"].values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert_all_succeeded(job, SCOUTS, "back-{n}\n")
    assert [g.proc.pid for g in cluster.generals if g.proc is not None and g.running] == pids


# ---------------------------------------------------------------------- keys
def test_cluster_rotation(cluster: Cluster) -> None:
    for i in (A, B, C):
        cluster.wait_online(SCOUTS, via=i, timeout=15)
    stop = threading.Event()
    done: dict[int, list[dict[str, Any]]] = {i: [] for i in (A, B, C)}
    errors: list[str] = []

    def load(i: int) -> None:
        n = 0
        while not stop.is_set():
            body = ping() if n % 2 else cmd("echo rot-$SCOUT_NAME", timeout=10)
            n += 1
            try:
                done[i].append(cluster.submit(i, body, wait=30))
            except Exception as exc:
                errors.append(f"via {'ABC'[i]}: {exc!r}")
                return

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in (A, B, C)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(len(v) >= 1 for v in done.values()) or bool(errors), 30, "a first job on each General")
        rotations = []
        for _ in range(2):
            before = {i: len(v) for i, v in done.items()}
            rotations.append(cluster.api(A, "POST", "/api/v1/keys/rotate"))

            def two_more(before: dict[int, int] = before) -> bool:
                return all(len(v) >= before[i] + 2 for i, v in done.items()) or bool(errors)

            wait_for(two_more, 40, "two more jobs on each General after the rotation")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert [r["key_id"] for r in rotations] == sorted({r["key_id"] for r in rotations}), rotations
    for i, jobs in done.items():
        for job in jobs:
            bad = [n for n, h in job["hosts"].items() if h["state"] != "succeeded"]
            assert job["state"] == "done" and not bad, f"via {'ABC'[i]} around a rotation: {summary(job)}"
            assert sorted(job["hosts"]) == SCOUTS, summary(job)
    for i in (A, B, C):
        assert_all_succeeded(cluster.submit(i, cmd("echo after-$SCOUT_NAME"), wait=30), SCOUTS, "after-{n}\n")


def test_key_delete_closes_the_connection_wherever_it_is(cluster: Cluster) -> None:
    victim = (cluster.on(B) or cluster.on(C))[0]
    general = cluster.placement()[victim]
    others = [n for n in SCOUTS if n != victim]
    cluster.wait_online(SCOUTS, via=A, timeout=15)
    ends = cluster.scout_disconnects(victim)

    result = cluster.cli(A, "key", "delete", victim)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(
        lambda: cluster.scout_disconnects(victim) > ends,
        10,
        f"{victim} (on General {'ABC'[general or 0]}) to lose its connection after its key was deleted through A",
    )
    for i in (A, B, C):
        job = cluster.submit(i, cmd("echo still-$SCOUT_NAME", hosts=",".join(others)), wait=30)
        assert_all_succeeded(job, others, "still-{n}\n")


# ---------------------------------------------------------------------- a General dies
def test_kill_general_mid_job(cluster: Cluster) -> None:
    on_b = cluster.on(B)
    cluster.wait_online(SCOUTS, via=A, timeout=15)
    started = cluster.submit(A, cmd("sleep 6; echo done-$SCOUT_NAME", timeout=30))
    t0 = time.monotonic()
    running_on_every_host(cluster, A, started["job"], limit=4.5)
    cluster.kill_general(B)
    killed_after = time.monotonic() - t0
    assert killed_after < 5.5, f"B was killed {killed_after:.1f}s in, not while the 6 s tasks ran"

    job = cluster.wait_job(A, started["job"], timeout=60)
    assert sorted(job["hosts"]) == SCOUTS, summary(job)
    assert all(h["state"] in FINAL for h in job["hosts"].values()), summary(job)
    lost_b = {n: job["hosts"][n]["state"] for n in on_b if job["hosts"][n]["state"] != "succeeded"}
    assert not lost_b, f"B killed {killed_after:.1f}s in; its scouts' hosts: {lost_b}; {summary(job)}"
    assert_all_succeeded(job, SCOUTS, "done-{n}\n")  # stdout once: results stored once
    assert cluster.job_counts(A, started["job"]) == {"succeeded": len(SCOUTS)}
    assert view(cluster.job(C, started["job"])) == view(job)

    # B's scouts moved on; B comes back and serves every scout again.
    cluster.wait_connected(timeout=30)
    moved = cluster.placement()
    assert all(moved[n] in (A, C) for n in on_b), {n: moved[n] for n in on_b}
    cluster.start_general(B)
    cluster.wait_online(SCOUTS, via=B, timeout=20)
    assert_all_succeeded(cluster.submit(B, cmd("echo B-$SCOUT_NAME"), wait=30), SCOUTS, "B-{n}\n")


def test_a_task_that_died_with_its_general_is_lost_at_once(cluster: Cluster) -> None:
    """B dies and, with it, two of its scouts (their machines rebooted): when those scouts come
    back, elsewhere, without the task, the job marks them lost then and there, not at its deadline."""
    doomed = cluster.on(B)[:2]
    assert len(doomed) == 2, cluster.placement()
    cluster.wait_online(SCOUTS, via=A, timeout=15)
    started = cluster.submit(A, cmd("sleep 6; echo done-$SCOUT_NAME", timeout=60))
    running_on_every_host(cluster, A, started["job"], limit=4.5)
    t0 = time.monotonic()
    cluster.kill_general(B)
    for name in doomed:
        cluster.stop_scout(name, signal.SIGKILL)
        cluster.start_scout(name)

    job = cluster.wait_job(A, started["job"], timeout=60)
    took = time.monotonic() - t0
    for name in doomed:
        host = job["hosts"][name]
        assert host["state"] == "lost", summary(job)
        assert "came back without the task" in host["error"], host
    assert took < 20, f"the job took {took:.1f}s: the lost hosts waited for the 60 s deadline"
    rest = [n for n in SCOUTS if n not in doomed]
    assert all(job["hosts"][n]["state"] == "succeeded" for n in rest), summary(job)
    assert view(cluster.job(C, started["job"])) == view(job)
    cluster.start_general(B)


def test_kill_owner_mid_job(cluster: Cluster) -> None:
    on_a = cluster.on(A)
    cluster.wait_online(SCOUTS, via=A, timeout=15)
    started = cluster.submit(A, cmd("sleep 6; echo done-$SCOUT_NAME", timeout=15))
    running_on_every_host(cluster, A, started["job"], limit=4.5)
    cluster.kill_general(A)

    job = cluster.wait_job(B, started["job"], timeout=60)  # finished by a survivor that adopted it
    assert sorted(job["hosts"]) == SCOUTS, summary(job)
    assert all(h["state"] in FINAL for h in job["hosts"].values()), summary(job)
    states = Counter(h["state"] for h in job["hosts"].values())
    not_ok_a = {n: job["hosts"][n]["state"] for n in on_a if job["hosts"][n]["state"] != "succeeded"}
    assert not not_ok_a, f"scouts that were on the dead owner A: {not_ok_a}; {states}"
    assert_all_succeeded(job, SCOUTS, "done-{n}\n")  # every scout kept running its task
    assert view(cluster.job(C, started["job"])) == view(job)
    assert cluster.job_counts(C, started["job"]) == {"succeeded": len(SCOUTS)}


def test_stopping_the_owner_hands_its_job_over_at_once(cluster: Cluster) -> None:
    """A clean stop (a rolling upgrade) of the General that owns a running job: a survivor adopts
    it at once, the scouts keep their tasks, and every result arrives in time (none late)."""
    on_a = cluster.on(A)
    cluster.wait_online(SCOUTS, via=B, timeout=15)
    started = cluster.submit(A, cmd("sleep 6; echo done-$SCOUT_NAME", timeout=25))
    running_on_every_host(cluster, A, started["job"], limit=4.5)
    t0 = time.monotonic()
    cluster.stop_general(A)

    job = cluster.wait_job(C, started["job"], timeout=60)
    took = time.monotonic() - t0
    not_ok = {n: (h["state"], h["error"]) for n, h in job["hosts"].items() if h["state"] != "succeeded"}
    assert not not_ok, f"hosts of A's own scouts {on_a}: {not_ok}"
    assert not [n for n, h in job["hosts"].items() if h["late"]], summary(job)
    assert took < 20, f"the job ended {took:.1f}s after the stop (timeout 25 s): it was not adopted at once"
    assert_all_succeeded(job, SCOUTS, "done-{n}\n")
    cluster.start_general(A)
