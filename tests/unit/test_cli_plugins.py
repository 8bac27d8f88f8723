"""`troop plugin pull|list|update|versions|run`: the grammar, the requests, the rendering.

Against the fake API of fakeapi.py, which checks only the client side of the contract (the
real General is exercised by the integration tests): the exact request bodies, error
replies, exit statuses and how results are shown.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.fakeapi import JOB_ID, TOKEN, FakeApi, result, target, troop
from troop.cli.args import DEFAULT_CMD_TIMEOUT, DEFAULT_PLUGIN_UPDATE_TIMEOUT, parse_args
from troop.cli.commands_plugins import error_text, run_body, sort_entries, update_body, version_key
from troop.cli.main import main
from troop.cli.render import Style, render_job
from troop.cli.render_plugins import render_update, render_versions

PLAIN = Style()


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name", "version"),
    [
        ("hello", "hello", None),
        ("hello:v1.1.0", "hello", "v1.1.0"),
        ("disk-report_2.x:1.10", "disk-report_2.x", "1.10"),
    ],
)
def test_update_splits_name_and_version(spec: str, name: str, version: str | None) -> None:
    ns = parse_args(["plugin", "update", "web*", spec])
    assert ns.spec == (name, version)
    assert update_body(ns)["plugin"] == {"name": name, "version": version, "force": False}


def test_update_options_anywhere_before_double_dash() -> None:
    ns = parse_args([
        "plugin", "update", "--json", "web*", "--force", "--tag", "a", "hello:v2.0.0", "--os",
        "linux", "--one", "--async", "--timeout", "9", "--tag", "b", "--",
    ])
    assert (ns.target, ns.spec, ns.force) == ("web*", ("hello", "v2.0.0"), True)
    assert (ns.json, ns.os, ns.tag, ns.one, ns.detach, ns.timeout) == (
        True, "linux", ["a", "b"], True, True, 9.0,
    )
    assert ns.handler == "commands_plugins:run_update"
    everything = parse_args(["plugin", "update", "*"])
    assert (everything.spec, everything.force, everything.timeout) == (None, False, 300)
    assert update_body(everything)["plugin"] == {"name": None, "version": None, "force": False}


def test_run_takes_the_action_and_its_arguments() -> None:
    ns = parse_args(["plugin", "run", "--stream", "web*", "hello", "greet", "--os", "linux", "world", "--json"])
    assert (ns.target, ns.plugin, ns.plugin_action, ns.plugin_args) == ("web*", "hello", "greet", ["world"])
    assert (ns.stream, ns.os, ns.json, ns.timeout) == (True, "linux", True, DEFAULT_CMD_TIMEOUT)


@pytest.mark.parametrize(
    "argv",
    [
        ["hello", "greet", "--", "--loud", "-n", "3", "--json", "--"],
        ["hello", "--", "greet", "--loud", "-n", "3", "--json", "--"],
    ],
)
def test_run_passes_flags_after_double_dash_to_the_plugin(argv: list[str]) -> None:
    ns = parse_args(["plugin", "run", "web1", "--timeout", "5", *argv])
    assert (ns.plugin_action, ns.plugin_args) == ("greet", ["--loud", "-n", "3", "--json", "--"])
    assert ns.json is False
    assert run_body(ns) == {
        "kind": "plugin.run", "target": target("web1"), "timeout": 5, "stream": False,
        "plugin": {"name": "hello", "action": "greet", "args": ["--loud", "-n", "3", "--json", "--"]},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plugin"], "required: ACTION"),
        (["plugin", "update"], "required: TARGET"),
        (["plugin", "update", "w", "hello:"], "expected NAME or NAME:VERSION"),
        (["plugin", "update", "w", ":v1.0.0"], "expected NAME or NAME:VERSION"),
        (["plugin", "update", "w", "hello:latest"], "expected NAME or NAME:VERSION"),
        (["plugin", "update", "w", "hello:v1:v2"], "expected NAME or NAME:VERSION"),
        (["plugin", "update", "w", "-x"], "unrecognized arguments: -x"),
        (["plugin", "update", "w", "a", "b"], "unrecognized arguments: b"),
        (["plugin", "update", "w", "--stream"], "unrecognized arguments: --stream"),
        (["plugin", "update", "w", "hello", "--", "x"], "unexpected arguments after --"),
        (["plugin", "versions", "w"], "required: NAME"),
        (["plugin", "versions", "w", "../etc"], "expected a plugin name"),
        (["plugin", "run", "w", "hello"], "no ACTION given"),
        (["plugin", "run", "w", "hello", "greet", "--loud"], "(the plugin's own options go after --)"),
        (["plugin", "run", "w", "hello", "greet", "--timeout", "0"], "must be a positive number"),
        (["plugin", "pull", "extra"], "unrecognized arguments: extra"),
        (["plugin", "install", "w", "hello"], "invalid choice: 'install'"),
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
    assert "plugin           pull, list, install and run plugins" in out
    assert "troop plugin run 'web*' disk_report check -- --verbose" in out
    assert main(["plugin", "--help"]) == 0
    out = capsys.readouterr().out
    for action in ("pull", "list", "update", "versions", "run"):
        assert f"    {action}" in out
    assert "troop plugin update 'web*' disk_report:v1.2.0" in out
    assert main(["plugin", "update", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--force" in out and "(default 300)" in out and "--stream" not in out
    assert main(["plugin", "run", "--help"]) == 0
    assert "--stream" in capsys.readouterr().out


# --- pull and list --------------------------------------------------------------------------


def entry(name: str, os: str, version: str, size: int) -> dict[str, Any]:
    return {"name": name, "os": os, "version": version, "sha256": "ab" * 32, "size": size,
            "file": f"{name}/{name}-{os}-v{version}"}


INDEX = {
    "plugins": [
        entry("scout_manager", "linux", "0.1.0", 5120),
        entry("hello", "linux", "1.9.3", 80),
        entry("hello", "windows", "1.0.0", 2048),
        entry("hello", "linux", "1.10.0", 95),
        entry("disk-report", "linux", "1.2.0", 3 << 20),
    ],
    "errors": [
        "hello/hello-linux-v2: no version (NAME-OS-vX.Y.Z)",
        {"file": "evil/link", "error": "a symlink (not followed)"},
    ],
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "pulled_at": "2026-01-01T00:00:00Z",
}

TABLE = [
    "NAME           OS       VERSION  SIZE",
    "disk-report    linux    v1.2.0   3.0 MiB",
    "hello          linux    v1.10.0  95 B",
    "hello          linux    v1.9.3   80 B",
    "hello          windows  v1.0.0   2.0 KiB",
    "scout_manager  linux    v0.1.0   5.0 KiB",
]


def test_pull_prints_the_index_and_the_skipped_files(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.routes[("POST", "/api/v1/plugins/pull")] = lambda s: (200, INDEX)
    assert troop(api, "plugin", "pull") == 0  # files were skipped, but the pull worked
    out, err = capsys.readouterr()
    assert out.splitlines() == TABLE
    assert err.splitlines() == [
        "skipped: hello/hello-linux-v2: no version (NAME-OS-vX.Y.Z)",
        "skipped: evil/link: a symlink (not followed)",
    ]
    assert api.paths() == [("POST", "/api/v1/plugins/pull")]
    assert api.seen[0].body == {}
    assert api.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_pull_json_is_the_body(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("POST", "/api/v1/plugins/pull")] = lambda s: (200, INDEX)
    assert troop(api, "plugin", "pull", "--json") == 0
    out, err = capsys.readouterr()
    assert (json.loads(out), err) == (INDEX, "")


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        (502, "git clone of https://git.example/plugins failed: exit 128",
         "troop: 502 git clone of https://git.example/plugins failed: exit 128\n"),
        (403, "admin role required", "troop: 403 admin role required\n"),
    ],
)
def test_a_failed_pull_exits_2(
    api: FakeApi, status: int, error: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api.routes[("POST", "/api/v1/plugins/pull")] = lambda s: (status, {"error": error})
    assert troop(api, "plugin", "pull") == 2
    assert capsys.readouterr() == ("", shown)


def test_list_newest_version_first(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("GET", "/api/v1/plugins")] = lambda s: (200, INDEX)
    assert troop(api, "plugin", "list") == 0
    out, err = capsys.readouterr()
    assert (out.splitlines(), err) == (TABLE, "")
    assert api.paths() == [("GET", "/api/v1/plugins")]
    assert troop(api, "plugin", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == INDEX


def test_list_of_an_empty_index(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("GET", "/api/v1/plugins")] = lambda s: (200, {"plugins": [], "errors": [],
                                                             "commit": None, "pulled_at": None})
    assert troop(api, "plugin", "list") == 0
    assert capsys.readouterr() == ("", "no plugins\n")


def test_version_order_and_error_text() -> None:
    assert version_key("v1.10.0") > version_key("v1.9.3") > version_key("1.9") > version_key("v0.99.99")
    assert version_key("2.0.0") == version_key("v2.0.0")
    assert version_key("1.0.x") < version_key("1.0.0")
    entries = sort_entries([{"name": "a", "os": "linux", "version": v} for v in ("1.2", "1.10", "1.9")])
    assert [e["version"] for e in entries] == ["1.10", "1.9", "1.2"]
    assert error_text({"path": "a/b", "reason": "too big"}) == "a/b: too big"
    assert error_text({"error": "no folder"}) == "no folder"
    assert error_text({"odd": 1}) == '{"odd": 1}'


# --- update, versions, run: the jobs --------------------------------------------------------


def updated(*changes: str) -> dict[str, Any]:
    return result("succeeded", {"changes": list(changes), "installed": {}},
                  stdout="".join(c + "\n" for c in changes))


def test_update_request_and_changes(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {
        "web1": updated("hello: v1.0.0 -> v1.1.0", "scout_manager: v0.1.0 (unchanged)"),
        "web2": updated("hello: v1.1.0 (unchanged)"),
        "web10": result("failed", {}, error="hello: sha256 mismatch"),
        "web3": result("offline", duration=None),
    }
    assert troop(api, "plugin", "update", "web*", "hello:v1.1.0", "--force") == 1
    assert api.posted() == {
        "kind": "plugin.update", "target": target(), "timeout": 300,
        "plugin": {"name": "hello", "version": "v1.1.0", "force": True},
    }
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1   succeeded",
        "  hello: v1.0.0 -> v1.1.0",
        "  scout_manager: v0.1.0 (unchanged)",
        "web10  failed",
        "  error: hello: sha256 mismatch",
        "web2   succeeded",
        "  hello: v1.1.0 (unchanged)",
        "web3   offline    not connected when the job was sent",
    ]
    assert err == "4 hosts: 2 succeeded, 1 failed, 1 offline\n"


def test_update_of_every_wanted_plugin(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {"db1": updated("hello: v1.1.0 (unchanged)")}
    assert troop(api, "plugin", "update", "db1", "--os", "linux", "--timeout", "30") == 0
    assert api.posted() == {
        "kind": "plugin.update", "target": target("db1", os="linux"), "timeout": 30,
        "plugin": {"name": None, "version": None, "force": False},
    }
    assert capsys.readouterr() == (
        "db1  succeeded\n  hello: v1.1.0 (unchanged)\n", "1 host: 1 succeeded\n",
    )


def test_update_without_changes_in_data_shows_stdout() -> None:
    text = render_update("h", result("succeeded", None, stdout="hello: v1 -> v2\n", stderr="warn\n"), PLAIN)
    assert text.splitlines() == ["h  succeeded", "  hello: v1 -> v2", "  warn"]
    colored = render_update("h", updated("a: v1.0.0 (unchanged)"), Style(color=True))
    assert "\x1b[2ma: v1.0.0 (unchanged)\x1b[0m" in colored


def test_versions_request_and_rendering(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {
        "web1": result("succeeded", {"name": "hello", "version": "v1.1.0"}),
        "web2": result("succeeded", {"name": "hello", "version": None}),
        "web3": result("succeeded", {"name": "hello", "version": "1.0.0"}),  # index form, no v
        "web40": result("timed_out"),
    }
    assert troop(api, "plugin", "versions", "--tag", "eu", "web*", "hello") == 1
    assert api.posted() == {
        "kind": "plugin.versions", "target": target(tags=["eu"]), "timeout": 60,
        "plugin": {"name": "hello"},
    }
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1   v1.1.0",
        "web2   not installed",
        "web3   v1.0.0",
        "web40  timed_out  no result before the timeout",
    ]
    assert err == "4 hosts: 3 succeeded, 1 timed_out\n"


def test_versions_defuses_what_the_host_sent() -> None:
    hostile = result("succeeded", {"version": "\x1b[2Jv1"}, late=True)
    assert render_versions("h", hostile, Style(sanitize=True)) == "h  ^[[2Jv1  (late)"


def test_run_is_rendered_like_cmd(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {
        "web1": result("succeeded", None, exit_code=0, stdout="hello, world\n"),
        "web2": result("failed", None, exit_code=3, stderr="no such action: greet\n"),
    }
    assert troop(api, "plugin", "run", "web*", "hello", "greet", "world", "--", "--loud") == 1
    assert api.posted() == {
        "kind": "plugin.run", "target": target(), "timeout": 60, "stream": False,
        "plugin": {"name": "hello", "action": "greet", "args": ["world", "--loud"]},
    }
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web1  succeeded  exit 0  0.020s", "  hello, world",
        "web2  failed     exit 3  0.020s", "  no such action: greet",
    ]
    assert err == "2 hosts: 1 succeeded, 1 failed\n"


def test_run_streams_output_live(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {"web1": result("succeeded", None, exit_code=0, stdout="one\ntwo\n")}
    api.output = [{"event": "output", "host": "web1", "stream": "stdout", "data": "one\ntwo\n"}]
    assert troop(api, "plugin", "run", "web1", "hello", "count", "--stream", "--timeout", "2.5") == 0
    body = api.posted()
    assert (body["stream"], body["timeout"], body["plugin"]["args"]) == (True, 2.5, [])
    assert capsys.readouterr().out.splitlines() == [
        "web1 | one", "web1 | two", "web1  succeeded  exit 0  0.020s",
    ]


def test_async_and_json(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.results = {"web1": updated("hello: v1.0.0 -> v1.1.0")}
    assert troop(api, "plugin", "update", "web1", "hello", "--async") == 0
    assert capsys.readouterr().out == f"{JOB_ID}\n"
    assert troop(api, "plugin", "update", "web1", "hello", "--json") == 0
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert (job["kind"], job["hosts"]["web1"]["data"]["changes"]) == (
        "plugin.update", ["hello: v1.0.0 -> v1.1.0"],
    )
    assert err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["plugin", "update", "web1", "nope"],
        ["plugin", "versions", "web1", "nope"],
        ["plugin", "run", "web1", "nope", "x"],
    ],
)
def test_job_api_error_exits_2(api: FakeApi, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("POST", "/api/v1/jobs")] = lambda s: (
        422, {"error": "plugin.name: no plugin 'nope' in the index (troop plugin list)"},
    )
    assert troop(api, *argv) == 2
    assert capsys.readouterr() == (
        "", "troop: plugin.name: no plugin 'nope' in the index (troop plugin list)\n",
    )
    assert api.paths() == [("POST", "/api/v1/jobs")]


def test_plugin_jobs_render_by_kind_in_job_show() -> None:
    job = {"job": "j", "kind": "plugin.update", "state": "done", "hosts": {"web1": updated("a: v1 -> v2")}}
    assert render_job(job, PLAIN) == "web1  succeeded\n  a: v1 -> v2"
    job["kind"] = "plugin.versions"
    job["hosts"] = {"web1": result("succeeded", {"name": "a", "version": "v2"})}
    assert render_job(job, PLAIN) == "web1  v2"
    job["kind"] = "plugin.run"
    assert render_job(job, PLAIN) == "web1  succeeded  0.020s"


def test_defaults() -> None:
    assert parse_args(["plugin", "update", "w"]).timeout == DEFAULT_PLUGIN_UPDATE_TIMEOUT == 300
    assert parse_args(["plugin", "versions", "w", "x"]).timeout == DEFAULT_CMD_TIMEOUT == 60
    assert parse_args(["plugin", "run", "w", "x", "y"]).timeout == 60
    assert parse_args(["plugin", "pull"]).json is False
    assert parse_args(["plugin", "list", "--json"]).json is True
