"""The key workflow with real processes: pending, accepted, rejected, denied, deleted, restarts."""

from __future__ import annotations

import json
import shutil
import time

from tests.integration.conftest import run_json
from troop.localfleet import Fleet


def keys(fleet: Fleet) -> dict[str, list[str]]:
    code, out = run_json(fleet, "key", "list")
    assert code == 0
    return out


def wait_for(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_pending_scout_works_once_accepted_without_restart(new_fleet: Fleet) -> None:
    new_fleet.start_general(auto_accept=False)
    new_fleet.start_scout("app1")
    wait_for(lambda: keys(new_fleet)["pending"] == ["app1"])
    assert new_fleet.cli("ping", "app1").returncode == 2  # not accepted: not a target
    assert new_fleet.cli("key", "accept", "app1").returncode == 0
    new_fleet.wait_online(["app1"], timeout=10)
    code, job = run_json(new_fleet, "cmd", "app1", "--", "echo", "hi")
    assert code == 0 and job["hosts"]["app1"]["stdout"] == "hi\n"
    assert keys(new_fleet)["accepted"] == ["app1"]


def test_reject_survives_a_general_restart(new_fleet: Fleet) -> None:
    new_fleet.start_general(auto_accept=False)
    new_fleet.start_scout("bad1")
    wait_for(lambda: "bad1" in keys(new_fleet)["pending"])
    assert new_fleet.cli("key", "reject", "bad1").returncode == 0
    assert keys(new_fleet)["rejected"] == ["bad1"]
    new_fleet.stop_general()
    new_fleet.start_general(auto_accept=True)
    time.sleep(1.0)
    assert keys(new_fleet)["rejected"] == ["bad1"]
    assert new_fleet.cli("ping", "bad1").returncode == 2


def test_new_key_under_known_hostname_is_denied_and_stored_key_kept(new_fleet: Fleet) -> None:
    new_fleet.start_general(auto_accept=True)
    new_fleet.start_scout("web1")
    new_fleet.wait_online(["web1"])
    before = new_fleet.api("GET", "/api/v1/hosts")["hosts"][0]["fingerprint"]
    new_fleet.stop_scout("web1")
    shutil.rmtree(new_fleet.root / "scouts" / "web1")  # a new machine claiming the name: new key
    new_fleet.start_scout("web1")
    wait_for(lambda: keys(new_fleet)["denied"] == ["web1"])
    hosts = new_fleet.api("GET", "/api/v1/hosts")["hosts"]
    assert hosts[0]["fingerprint"] == before and hosts[0]["online"] is False
    _code, job = run_json(new_fleet, "ping", "web1")
    assert job["hosts"]["web1"]["state"] == "offline"
    # Deleting the old key lets the new machine in.
    assert new_fleet.cli("key", "delete", "web1").returncode == 0
    new_fleet.wait_online(["web1"], timeout=45)
    assert new_fleet.api("GET", "/api/v1/hosts")["hosts"][0]["fingerprint"] != before


def test_scouts_reconnect_after_general_restart_and_jobs_survive(new_fleet: Fleet) -> None:
    new_fleet.start_general()
    for name in ("r1", "r2", "r3"):
        new_fleet.start_scout(name)
    new_fleet.wait_online(["r1", "r2", "r3"])
    code, job = run_json(new_fleet, "cmd", "*", "--", "echo", "before")
    assert code == 0
    new_fleet.stop_general()
    new_fleet.start_general()
    new_fleet.wait_online(["r1", "r2", "r3"], timeout=45)
    code, again = run_json(new_fleet, "cmd", "*", "--", "echo", "after")
    assert code == 0 and {h["stdout"] for h in again["hosts"].values()} == {"after\n"}
    code, old = run_json(new_fleet, "job", "show", job["job"])
    assert {h["stdout"] for h in old["hosts"].values()} == {"before\n"}
    listing = json.loads(new_fleet.cli("job", "list", "--json").stdout)
    assert job["job"] in [j["job"] for j in listing["jobs"]]


def test_rotation_rekeys_connected_scouts_without_failing_a_task(new_fleet: Fleet) -> None:
    new_fleet.start_general()
    for name in ("k1", "k2"):
        new_fleet.start_scout(name)
    new_fleet.wait_online(["k1", "k2"])
    running = new_fleet.cli("cmd", "*", "--async", "--", "sleep", "1.5").stdout.strip()
    for _ in range(3):
        assert new_fleet.cli("key", "rotate").returncode == 0
    code, job = run_json(new_fleet, "job", "show", running, "--wait")
    assert all(h["state"] == "succeeded" for h in job["hosts"].values()), job
    code, job = run_json(new_fleet, "ping", "*")
    assert code == 0, job
    log = (new_fleet.root / "general.log").read_text()
    assert "rotated session key" in log
    assert "handshake" not in (new_fleet.root / "scout-k1.log").read_text().lower()


def test_delete_of_connected_host_ends_its_session(new_fleet: Fleet) -> None:
    new_fleet.start_general()
    new_fleet.start_scout("d1")
    new_fleet.start_scout("d2")
    new_fleet.wait_online(["d1", "d2"])
    assert new_fleet.cli("key", "delete", "d1").returncode == 0
    code, _job = run_json(new_fleet, "ping", "d2")
    assert code == 0  # the other scout was re-keyed, not disturbed
