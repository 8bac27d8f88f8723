"""The CLI against the fake API of fakeapi.py over real HTTP: jobs, keys, tokens, hosts.

Checks the client side of the contract only (the real General is exercised by the
integration tests): request paths and bodies, the bearer token, the chunked NDJSON events
stream, error replies.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.unit.fakeapi import TOKEN, FakeApi, cmd_result, spawn, troop
from troop.cli.main import main


def host(state: str, **kw: Any) -> dict[str, Any]:
    return cmd_result(state, **{"duration": 0.01, **kw})


@pytest.fixture
def fake_api() -> FakeApi:
    """Job 17, whose hosts web1 and web2 both succeed."""
    return FakeApi(
        results={
            "web1": host("succeeded", exit_code=0, stdout="up 3 days\n"),
            "web2": host("succeeded", exit_code=0, stdout="up 9 days\n"),
        },
        job_id=17,
        sent=host("sent"),
    )


def test_ping_round_trip(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert troop(api, "ping", "web*", "--os", "linux") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  exit 0  0.010s", "  up 3 days",
        "web2  succeeded  exit 0  0.010s", "  up 9 days",
    ]
    assert err == "2 hosts: 2 succeeded\n"
    post, events = api.seen
    assert (post.method, post.path) == ("POST", "/api/v1/jobs")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.body["kind"] == "ping"
    assert post.body["target"] == {"hosts": "web*", "os": "linux", "tags": [], "one": False}
    assert (events.method, events.path) == ("GET", "/api/v1/jobs/17/events")


def test_cmd_with_a_failed_host_exits_1(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results["web2"] = host("failed", exit_code=2, stderr="no such file\n")
    api.results["web3"] = host("sent", error="no ack")
    assert troop(api, "cmd", "web*", "--env", "A=1", "--", "cat", "/nope") == 1
    out, err = capsys.readouterr()
    assert "web2  failed     exit 2  0.010s\n  no such file\n" in out
    assert "web3  sent       did not answer  0.010s\n  error: no ack" in out
    assert err == "3 hosts: 1 succeeded, 1 failed, 1 sent\n"
    assert api.seen[0].body["command"]["argv"] == ["cat", "/nope"]
    assert api.seen[0].body["command"]["env"] == {"A": "1"}


@pytest.mark.parametrize("chunk_size", [7, 4096])
def test_events_cut_at_any_byte_give_the_same_result(
    api: FakeApi, chunk_size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    api.chunk_size = chunk_size
    assert troop(api, "ping", "*") == 0
    out, err = capsys.readouterr()
    assert out.count("succeeded") == 2
    assert err == "2 hosts: 2 succeeded\n"


def test_json_prints_one_object(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert troop(api, "cmd", "--json", "web*", "uptime") == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["job"] == 17
    assert data["hosts"]["web1"]["stdout"] == "up 3 days\n"
    assert err == ""


def test_async_prints_the_job_id_and_leaves(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert troop(api, "ping", "*", "--async") == 0
    assert capsys.readouterr().out == "17\n"
    assert troop(api, "ping", "*", "--async", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"job": 17}
    assert [s.method for s in api.seen] == ["POST", "POST"]


def test_stream_prints_lines_live_with_host_prefix(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.output = [
        {"event": "output", "host": "web1", "stream": "stdout", "data": "line one\nline "},
        {"event": "output", "host": "web1", "stream": "stdout", "data": "two\npart"},
        {"event": "output", "host": "web1", "stream": "stderr", "data": "warn\n"},
    ]
    assert troop(api, "cmd", "web*", "--stream", "--", "work") == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:4] == [
        "web1 | line one", "web1 | line two", "web1 | part", "web1  succeeded  exit 0  0.010s",
    ]
    assert "up 3 days" not in out  # already streamed for web1; web2 streamed nothing
    assert "up 9 days" in out
    assert "web1 | warn" in err
    assert api.seen[0].body["stream"] is True


def test_broken_stream_falls_back_to_the_job(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.cut_stream = True
    api.results["web2"] = host("sent", error="no ack")
    assert troop(api, "ping", "*") == 1
    out, _ = capsys.readouterr()
    assert out.count("web1  succeeded") == 1
    assert "web2  sent" in out
    assert api.seen[-1].path == "/api/v1/jobs/17?wait=60"


def test_401_exits_2_with_the_api_message(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert troop(api, "ping", "*", token="wrong") == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "troop: 401 invalid or missing token\n")


def test_api_error_message_reaches_stderr(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.routes[("POST", "/api/v1/jobs")] = lambda s: (422, {"error": "no hosts match target 'x*'"})
    assert troop(api, "ping", "x*") == 2
    assert capsys.readouterr().err == "troop: no hosts match target 'x*'\n"


def test_unreachable_general_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens there
    assert main(["--url", url, "--token", "t", "host", "list"]) == 2
    assert capsys.readouterr().err.startswith(f"troop: cannot reach the General at {url}: ")


def test_job_show_and_wait(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert troop(api, "job", "show", "17") == 0
    assert "web2  succeeded" in capsys.readouterr().out
    assert troop(api, "job", "show", "17", "--wait", "--json") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "done"
    assert [s.path for s in api.seen] == ["/api/v1/jobs/17", "/api/v1/jobs/17/events"]


def test_job_show_of_a_running_job(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("GET", "/api/v1/jobs/17")] = lambda s: (200, api.job("running"))
    assert troop(api, "job", "show", "17") == 1
    out, err = capsys.readouterr()
    assert "web1  sent" in out
    assert "job 17 still running; see: troop job show 17 --wait" in err


def test_job_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    listing = {"jobs": [{
        "job": 17, "kind": "ping", "state": "done", "created_at": "2024-01-02T03:04:05Z",
        "created_by": "admin", "target": {"hosts": "web*", "os": "linux", "tags": ["a"]},
        "counts": {"failed": 1, "succeeded": 14},
    }]}
    api.routes[("GET", "/api/v1/jobs")] = lambda s: (200, listing)
    assert troop(api, "job", "list", "--limit", "5") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["JOB", "KIND", "STATE", "CREATED", "BY", "TARGET", "HOSTS"]
    assert row.startswith("17   ping  done")
    assert row.endswith("web* os=linux tag=a  14 succeeded, 1 failed")
    assert api.seen[-1].path == "/api/v1/jobs?limit=5"


def test_keys(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {"accepted": ["web2", "web1"], "pending": ["new1"], "rejected": [], "denied": []}
    api.routes[("GET", "/api/v1/keys")] = lambda s: (200, keys)
    api.routes[("POST", "/api/v1/keys/accept")] = lambda s: (
        200, {"changed": ["new1"], "errors": {"ghost": "no such host"}},
    )
    assert troop(api, "key", "list") == 0
    assert capsys.readouterr().out == (
        "Accepted (2):\n  web1\n  web2\nPending (1):\n  new1\nRejected (0):\nDenied (0):\n"
    )
    assert troop(api, "key", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == keys
    assert troop(api, "key", "accept", "new1", "ghost") == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("accepted new1\n", "troop: ghost: no such host\n")
    assert api.seen[-1].body == {"hosts": ["new1", "ghost"]}


def test_tokens(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    created = {"id": 3, "name": "ci", "role": "operator", "token": "tok-abc", "expires_at": None}
    api.routes[("POST", "/api/v1/tokens")] = lambda s: (201, created)
    api.routes[("DELETE", "/api/v1/tokens/ci%2Fbot")] = lambda s: (200, {"revoked": 3})
    assert troop(api, "token", "create", "ci", "--role", "operator", "--expires", "3600") == 0
    out, err = capsys.readouterr()
    assert out == "tok-abc\n"
    assert "shown only this once" in err
    assert api.seen[-1].body == {
        "name": "ci", "role": "operator", "expires_in": 3600, "targets": None,
    }
    assert troop(api, "token", "revoke", "ci/bot") == 0
    assert capsys.readouterr().out == "revoked token 3\n"


def test_host_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    hosts = {"hosts": [{
        "hostname": "web1", "state": "accepted", "online": True, "os": "linux",
        "ip": "10.0.0.1", "tags": ["prod", "eu"], "version": "0.1.0", "plugins": {},
        "last_seen": None, "fingerprint": "ab:cd",
    }]}
    api.routes[("GET", "/api/v1/hosts")] = lambda s: (200, hosts)
    assert troop(api, "host", "list") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["HOST", "STATE", "ONLINE", "OS"]
    assert row.split() == ["web1", "accepted", "yes", "linux", "10.0.0.1", "prod,eu", "0.1.0", "-"]

    # In a cluster each host says which General its scout is connected to.
    hosts["hosts"].append({**hosts["hosts"][0], "hostname": "web2", "general": "4f1c9a2e"})
    assert troop(api, "host", "list") == 0
    header, row1, row2 = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["HOST", "STATE", "ONLINE", "GENERAL"]
    assert row1.split()[:4] == ["web1", "accepted", "yes", "-"]
    assert row2.split()[:5] == ["web2", "accepted", "yes", "4f1c9a2e", "linux"]


def test_entry_point_in_a_subprocess_prints_hosts_as_they_finish(api: FakeApi) -> None:
    # web1's result is held back by the fake until we have read it from the pipe: proof
    # that the CLI prints (and flushes) each host as its event arrives, not at the end.
    api.release = threading.Event()
    proc = spawn(api, "ping", "*")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "web1  succeeded  exit 0  0.010s\n"
        api.release.set()
        out, err = proc.communicate(timeout=10)
    finally:
        api.release.set()
        proc.kill()
    assert proc.returncode == 0
    assert "web2  succeeded" in out
    assert err == "2 hosts: 2 succeeded\n"
