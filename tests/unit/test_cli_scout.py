"""`troop scout list|restart|stop|upgrade`: the grammar, the requests, the rendering.

Against the fake API of fakeapi.py, which checks only the client side of the contract (the
real General is exercised by the integration tests): the exact requests (the wheel upload
included), error replies, exit statuses and how results are shown.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakeapi import JOB_ID, TOKEN, FakeApi, result, target, troop
from troop.cli.args import DEFAULT_RESTART_TIMEOUT, DEFAULT_UPGRADE_TIMEOUT, parse_args
from troop.cli.commands_scout import plugins_text, scout_state
from troop.cli.main import main
from troop.cli.render import Style, render_job
from troop.cli.render_plugins import render_restart, render_upgrade

PLAIN = Style()
WHEEL_NAME = "troopstack-0.2.0-py3-none-any.whl"
WHEEL = b"PK\x03\x04 not really a zip, but bytes all the same\n"
WHEEL_SHA = hashlib.sha256(WHEEL).hexdigest()


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / WHEEL_NAME
    path.write_bytes(WHEEL)
    return path


# --- the command line -----------------------------------------------------------------------


def test_options_anywhere_before_double_dash() -> None:
    ns = parse_args([
        "scout", "upgrade", "--tag", "canary", "--to", "0.2.0", "web*", "--json", "--os",
        "linux", "--one", "--async", "--timeout", "90", "--",
    ])
    assert (ns.target, ns.to, ns.handler) == ("web*", "0.2.0", "commands_scout:run_upgrade")
    assert (ns.json, ns.os, ns.tag, ns.one, ns.detach, ns.timeout) == (
        True, "linux", ["canary"], True, True, 90.0,
    )
    restart = parse_args(["scout", "restart", "--one", "web*", "--tag", "a"])
    assert (restart.target, restart.one, restart.tag, restart.action) == ("web*", True, ["a"], "restart")
    assert restart.handler == "commands_scout:run_lifecycle"


def test_defaults() -> None:
    assert parse_args(["scout", "restart", "w"]).timeout == DEFAULT_RESTART_TIMEOUT == 120
    assert parse_args(["scout", "stop", "w"]).timeout == 120
    assert parse_args(["scout", "upgrade", "w", "--to", "1"]).timeout == DEFAULT_UPGRADE_TIMEOUT == 300
    assert parse_args(["scout", "list"]).json is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scout"], "required: ACTION"),
        (["scout", "upgrade", "w"], "required: --to"),
        (["scout", "upgrade", "--to", "0.2.0"], "required: TARGET"),
        (["scout", "restart"], "required: TARGET"),
        (["scout", "stop", "w", "x"], "unrecognized arguments: x"),
        (["scout", "stop", "w", "--stream"], "unrecognized arguments: --stream"),
        (["scout", "restart", "w", "--", "now"], "unexpected arguments after --"),
        (["scout", "list", "w"], "unrecognized arguments: w"),
        (["scout", "kill", "w"], "invalid choice: 'kill'"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "scout            list, restart, stop or upgrade scouts" in out
    assert "troop scout upgrade '*' --to ./troopstack-0.2.0-py3-none-any.whl" in out
    assert main(["scout", "--help"]) == 0
    out = capsys.readouterr().out
    for action in ("list", "restart", "stop", "upgrade"):
        assert f"    {action}" in out
    assert "troop scout restart 'web*'" in out
    assert main(["scout", "upgrade", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--to VERSION|WHEEL" in out and "(default 300)" in out and "--stream" not in out


# --- list -----------------------------------------------------------------------------------


def host(name: str, state: str = "accepted", online: bool = True, **kw: Any) -> dict[str, Any]:
    return {
        "hostname": name, "state": state, "online": online, "os": "linux", "ip": "10.0.0.1",
        "tags": [], "version": "0.1.0", "plugins": [], "last_seen": None, "fingerprint": "ab:cd",
        **kw,
    }


def test_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    seen = time.time() - 125
    hosts = {"hosts": [
        host("web2", online=False, plugins=["scout_manager:0.1.0"], last_seen=seen),
        host("web1", tags=["prod", "eu"], plugins=["scout_manager:0.1.0", "hello:1.1.0"],
             version="0.2.0", ip="10.0.0.2"),
        host("new1", state="pending", online=True, os="windows", version=""),
    ]}
    api.routes[("GET", "/api/v1/hosts")] = lambda s: (200, hosts)
    assert troop(api, "scout", "list") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "HOST  STATE    VERSION  OS       IP        TAGS     PLUGINS                          LAST SEEN",
        "new1  pending  -        windows  10.0.0.1  -        -                                -",
        "web1  online   0.2.0    linux    10.0.0.2  prod,eu  hello:1.1.0,scout_manager:0.1.0  -",
        "web2  offline  0.1.0    linux    10.0.0.1  -        scout_manager:0.1.0              2m ago",
    ]
    assert err == ""
    assert api.paths() == [("GET", "/api/v1/hosts")]
    assert troop(api, "scout", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == hosts


def test_list_without_hosts(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("GET", "/api/v1/hosts")] = lambda s: (200, {"hosts": []})
    assert troop(api, "scout", "list") == 0
    assert capsys.readouterr() == ("", "no hosts\n")


def test_state_and_plugins_text() -> None:
    assert scout_state(host("a")) == "online"
    assert scout_state(host("a", online=False)) == "offline"
    assert scout_state(host("a", state="rejected", online=True)) == "rejected"
    assert scout_state({"hostname": "a"}) == "-"
    assert plugins_text({"hello": "1.1.0", "b": None}) == "b,hello:1.1.0"
    assert plugins_text(None) == plugins_text([]) == "-"


# --- restart and stop -----------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["restart", "stop"])
def test_lifecycle_requests(api: FakeApi, verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {"web1": result("succeeded", {})}
    assert troop(api, "scout", verb, "web*", "--tag", "canary") == 0
    assert api.posted() == {"kind": f"scout.{verb}", "target": target(tags=["canary"]), "timeout": 120}
    assert api.paths()[-1] == ("GET", f"/api/v1/jobs/{JOB_ID}/events")


def test_restart_rendering(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {
        "web1": result("succeeded", {"version": "0.2.0", "pid": 4242}),
        "web2": result("timed_out", {}),
        "web3": result("failed", {}, error="scout_manager: systemctl restart failed",
                       stderr="Unit troop-scout.service not found.\n"),
    }
    assert troop(api, "scout", "restart", "*", "--timeout", "30") == 1
    assert api.posted()["timeout"] == 30
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  restarted  0.2.0  pid 4242",
        "web2  timed_out  no result before the timeout",
        "web3  failed",
        "  Unit troop-scout.service not found.",
        "  error: scout_manager: systemctl restart failed",
    ]
    assert err == "3 hosts: 1 succeeded, 1 failed, 1 timed_out\n"


def test_stop_rendering(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {"web1": result("succeeded", {}), "web2": result("offline", duration=None)}
    assert troop(api, "scout", "stop", "web*") == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  stopped",
        "web2  offline    not connected when the job was sent",
    ]


# --- upgrade: the requests ------------------------------------------------------------------


def upgrade_body(**upgrade: Any) -> dict[str, Any]:
    return {"kind": "scout.upgrade", "target": target(), "timeout": 300, "upgrade": upgrade}


def test_upgrade_uploads_the_wheel_when_the_general_lacks_it(
    api: FakeApi, wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.results = {"web1": result("succeeded", {"old": "0.1.0", "new": "0.2.0"})}
    assert troop(api, "scout", "upgrade", "web*", "--to", str(wheel)) == 0
    assert api.paths() == [
        ("HEAD", f"/api/v1/files/{WHEEL_SHA}"),
        ("PUT", "/api/v1/files"),
        ("POST", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{JOB_ID}/events"),
    ]
    put = api.seen[1].headers
    assert put["Content-Type"] == "application/octet-stream"
    assert put["Content-Length"] == str(len(WHEEL))
    assert put["X-Troop-Sha256"] == WHEEL_SHA
    assert put["X-Troop-Name"] == WHEEL_NAME
    assert put["Authorization"] == f"Bearer {TOKEN}"
    assert api.uploaded == WHEEL
    assert api.posted() == upgrade_body(sha256=WHEEL_SHA, wheel=WHEEL_NAME)
    assert capsys.readouterr() == ("web1  succeeded  0.1.0 -> 0.2.0\n", "1 host: 1 succeeded\n")


def test_upgrade_skips_the_upload_when_head_says_200(
    api: FakeApi, wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.blobs.add(WHEEL_SHA)
    api.results = {"web1": result("succeeded", {"old": "0.1.0", "new": "0.2.0"})}
    assert troop(api, "scout", "upgrade", "web*", "--to", str(wheel), "--async") == 0
    assert api.paths() == [("HEAD", f"/api/v1/files/{WHEEL_SHA}"), ("POST", "/api/v1/jobs")]
    assert api.uploaded is None
    assert api.posted() == upgrade_body(sha256=WHEEL_SHA, wheel=WHEEL_NAME)
    assert capsys.readouterr().out == f"{JOB_ID}\n"


@pytest.mark.parametrize("version", ["0.2.0", "v0.2.0"])
def test_upgrade_to_a_version_sends_no_file(
    api: FakeApi, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api.results = {"web1": result("succeeded", {"old": "0.1.0", "new": "0.2.0"})}
    assert troop(api, "scout", "upgrade", "web*", "--to", version) == 0
    assert api.paths() == [("POST", "/api/v1/jobs"), ("GET", f"/api/v1/jobs/{JOB_ID}/events")]
    assert api.posted() == upgrade_body(version=version)


def test_upgrade_to_an_unknown_version_exits_2(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "upgrade.version: no wheel of version 9.9.9 was uploaded (--to FILE.whl)"
    api.routes[("POST", "/api/v1/jobs")] = lambda s: (422, {"error": message})
    assert troop(api, "scout", "upgrade", "*", "--to", "9.9.9") == 2
    assert capsys.readouterr() == ("", f"troop: {message}\n")


def test_a_missing_or_misnamed_wheel_exits_2_before_any_request(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / WHEEL_NAME
    assert troop(api, "scout", "upgrade", "*", "--to", str(missing)) == 2
    assert capsys.readouterr() == ("", f"troop: cannot read {missing}: No such file or directory\n")
    other = tmp_path / "requests-2.0-py3-none-any.whl"
    other.write_bytes(WHEEL)
    assert troop(api, "scout", "upgrade", "*", "--to", str(other)) == 2
    assert capsys.readouterr().err == (
        f"troop: {other}: not a Troop wheel (expected troopstack-VERSION-....whl)\n"
    )
    assert api.seen == []


def test_a_failed_upload_stops_the_upgrade(
    api: FakeApi, wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.routes[("PUT", "/api/v1/files")] = lambda s: (413, {"error": "upload over the limit"})
    assert troop(api, "scout", "upgrade", "*", "--to", str(wheel)) == 2
    assert capsys.readouterr() == ("", "troop: upload over the limit\n")
    assert [m for m, _ in api.paths()] == ["HEAD", "PUT"]  # no job


# --- upgrade: the results -------------------------------------------------------------------


def test_upgrade_results_and_rollback(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {
        "web1": result("succeeded", {"old": "0.1.0", "new": "0.2.0"}),
        "web2": result("failed", {"rolled_back": True},
                       error="the new scout did not confirm within 60 s"),
        "web3": result("failed", {}, error="pip install failed: exit 1"),
    }
    assert troop(api, "scout", "upgrade", "web*", "--to", "0.2.0") == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  0.1.0 -> 0.2.0",
        "web2  failed     (rolled back)",
        "  error: the new scout did not confirm within 60 s",
        "web3  failed",
        "  error: pip install failed: exit 1",
    ]
    assert err == "3 hosts: 1 succeeded, 2 failed\n"


def test_upgrade_json(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {"web1": result("succeeded", {"old": "0.1.0", "new": "0.2.0"})}
    assert troop(api, "scout", "upgrade", "web1", "--to", "0.2.0", "--json") == 0
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert (job["kind"], job["hosts"]["web1"]["data"]) == ("scout.upgrade", {"old": "0.1.0", "new": "0.2.0"})
    assert err == ""


def test_renderers_odd_fields_and_terminal_safety() -> None:
    assert render_upgrade("h", result("succeeded", {"new": "0.2.0"}), PLAIN) == "h  succeeded  ? -> 0.2.0"
    hostile = result("succeeded", {"version": "\x1b[2J", "pid": "1\x07"})
    assert render_restart("h", hostile, Style(sanitize=True)) == "h  succeeded  restarted  ^[[2J  pid 1^G"
    colored = render_upgrade("h", result("failed", {"rolled_back": True}), Style(color=True))
    assert "\x1b[33m(rolled back)\x1b[0m" in colored


def test_scout_jobs_render_by_kind_in_job_show() -> None:
    job = {"job": "j", "kind": "scout.restart", "state": "done",
           "hosts": {"web1": result("succeeded", {"version": "0.2.0", "pid": 7})}}
    assert render_job(job, PLAIN) == "web1  succeeded  restarted  0.2.0  pid 7"
    job["kind"] = "scout.stop"
    assert render_job(job, PLAIN) == "web1  succeeded  stopped"
