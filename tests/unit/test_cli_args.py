"""The `troop` grammar: options anywhere before `--`, the program after it, usage errors."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from troop.cli.args import (
    DEFAULT_CMD_TIMEOUT,
    DEFAULT_PING_TIMEOUT,
    build_parser,
    command_word,
    parse_args,
    split_program,
)
from troop.cli.commands_jobs import job_body
from troop.cli.context import make_context, resolve_token
from troop.cli.errors import UsageError
from troop.cli.main import main


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run main(argv), expect exit 2 and no stdout, return stderr."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_split_program_cuts_at_the_first_double_dash() -> None:
    assert split_program(["cmd", "w", "--", "a", "--", "b"]) == (["cmd", "w"], ["a", "--", "b"])
    assert split_program(["ping", "w"]) == (["ping", "w"], None)


def test_command_word_skips_top_level_options_and_their_values() -> None:
    assert command_word(["--url", "ping", "--token=t", "--token-file", "f", "cmd", "w"]) == "cmd"
    assert command_word(["--version"]) == command_word([]) == ""
    assert command_word(["nope", "ping"]) == "nope"


def test_only_the_named_command_is_built_in_full() -> None:
    # The others are bare parsers, yet `troop --help` lists every command the same way.
    assert build_parser("ping").format_help() == build_parser().format_help()
    assert build_parser("").format_help() == build_parser().format_help()
    ns = parse_args(["--url", "http://x", "--token", "t", "plugin", "run", "w", "p", "a"])
    assert (ns.url, ns.token, ns.handler) == ("http://x", "t", "commands_plugins:run_run")


def test_scout_upgrade_to_is_not_an_abbreviated_token() -> None:
    # The top-level parser sees every option; with abbreviations it took --to for --token.
    ns = parse_args(["--token", "t", "scout", "upgrade", "w", "--to", "0.2.0"])
    assert (ns.token, ns.to) == ("t", "0.2.0")


def test_ping_target_options_anywhere() -> None:
    ns = parse_args(
        ["ping", "--json", "web*", "--os", "linux", "--tag", "a", "--one", "--tag", "b"]
    )
    assert (ns.target, ns.json, ns.os, ns.tag, ns.one) == ("web*", True, "linux", ["a", "b"], True)
    assert ns.timeout == DEFAULT_PING_TIMEOUT
    assert not ns.detach and not ns.stream


def test_cmd_options_between_and_after_positionals() -> None:
    ns = parse_args(["cmd", "--json", "web1", "--os", "windows", "uptime", "--tag", "x", "--async"])
    assert ns.target == "web1"
    assert ns.program == ["uptime"]
    assert (ns.json, ns.os, ns.tag, ns.detach) == (True, "windows", ["x"], True)
    assert ns.timeout == DEFAULT_CMD_TIMEOUT


def test_everything_after_double_dash_is_the_program() -> None:
    ns = parse_args(
        ["cmd", "web1", "--env", "A=1", "--env", "B=x=y", "--dir", "/tmp",
         "--", "ls", "-l", "--json", "--"]
    )
    assert ns.program == ["ls", "-l", "--json", "--"]
    assert ns.json is False
    assert ns.env == {"A": "1", "B": "x=y"}
    body = job_body(ns, "cmd")
    assert body["command"] == {
        "argv": ["ls", "-l", "--json", "--"], "shell": None, "env": {"A": "1", "B": "x=y"},
        "cwd": "/tmp", "max_output": 1048576,
    }


def test_shell_joins_the_program_into_one_string() -> None:
    ns = parse_args(["cmd", "web*", "--shell", "--timeout", "5", "--", "echo", "$HOME", "&&", "ls"])
    body = job_body(ns, "cmd")
    assert body["command"]["shell"] == "echo $HOME && ls"
    assert body["command"]["argv"] == []
    assert body["timeout"] == 5 and isinstance(body["timeout"], int)


def test_ping_body_matches_the_contract() -> None:
    ns = parse_args(["ping", "web1,db*", "--tag", "prod", "--timeout", "2.5", "--stream"])
    assert job_body(ns, "ping") == {
        "kind": "ping",
        "target": {"hosts": "web1,db*", "os": None, "tags": ["prod"], "one": False},
        "timeout": 2.5,
        "stream": True,
    }


def test_env_values_may_be_empty_and_keep_equals() -> None:
    ns = parse_args(["cmd", "w", "--env", "EMPTY=", "--env", "EMPTY=again", "--", "env"])
    assert ns.env == {"EMPTY": "again"}


@pytest.mark.parametrize("bad", ["NOEQUALS", "=value"])
def test_bad_env_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(["cmd", "web1", "--env", bad, "--", "true"], capsys)
    assert "argument --env: expected K=V" in err
    assert "usage: troop cmd" in err


def test_target_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required: TARGET" in usage_error(["ping"], capsys)
    assert "required: TARGET" in usage_error(["cmd", "--json"], capsys)


def test_program_options_without_double_dash_get_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(["cmd", "web1", "ls", "-la"], capsys)
    assert "usage: troop cmd" in err
    assert "unrecognized arguments: -la (the program's own options go after --)" in err


def test_cmd_needs_a_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert "no program given" in usage_error(["cmd", "web1", "--"], capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["ping", "w", "--os", "Linux"],
        ["ping", "w", "--timeout", "0"],
        ["ping", "w", "--timeout", "soon"],
        ["cmd", "w", "--max-output", "-1", "--", "true"],
        ["ping", "w", "--bogus"],
        ["nosuchcommand"],
        [],
        ["key"],
        ["token", "create", "x"],
        ["token", "create", "x", "--role", "root"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(argv, capsys)


def test_key_change_needs_hosts_or_all_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert "give HOST names or --all" in usage_error(["key", "accept"], capsys)
    assert "not both" in usage_error(["key", "reject", "web1", "--all"], capsys)
    assert parse_args(["key", "delete", "--all"]).all is True
    assert parse_args(["key", "accept", "a", "b"]).hosts == ["a", "b"]


def test_double_dash_elsewhere_ends_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["key", "accept", "a", "--", "-odd-host"]).hosts == ["a", "-odd-host"]
    assert parse_args(["ping", "web1", "--"]).target == "web1"
    assert "unexpected arguments after --" in usage_error(["ping", "web1", "--", "x"], capsys)


def test_token_create_targets_split_on_commas() -> None:
    ns = parse_args(["token", "create", "ci", "--role", "operator", "--targets", "web*, db1,"])
    assert (ns.name, ns.role, ns.targets, ns.expires) == ("ci", "operator", ["web*", "db1"], None)


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "ping" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("troop ")


def test_global_options_before_or_after_the_command() -> None:
    before = parse_args(["--url", "http://a:1", "--token", "t", "ping", "w"])
    after = parse_args(["ping", "w", "--url", "http://b:2"])
    assert (before.url, before.token) == ("http://a:1", "t")
    assert after.url == "http://b:2"
    # A value given before the command is not reset by the leaf's hidden copy of the option.
    assert parse_args(["--url", "http://a:1", "ping", "w"]).url == "http://a:1"


def _ns(**kw: str | None) -> argparse.Namespace:
    return argparse.Namespace(**{"url": None, "token": None, "token_file": None, **kw})


def test_token_sources_and_precedence(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("  from-file\n")
    other = tmp_path / "env.token"
    other.write_text("env-file\n")
    env = {"TROOP_TOKEN": "from-env", "TROOP_TOKEN_FILE": str(other)}
    assert resolve_token(_ns(token="flag"), env) == "flag"
    assert resolve_token(_ns(token_file=str(path)), env) == "from-file"
    assert resolve_token(_ns(), env) == "from-env"
    assert resolve_token(_ns(), {"TROOP_TOKEN_FILE": str(other)}) == "env-file"
    assert resolve_token(_ns(), {}) is None


def test_token_problems_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read token file"):
        resolve_token(_ns(token_file=str(tmp_path / "missing")), {})
    with pytest.raises(UsageError, match="not both"):
        resolve_token(_ns(token="a", token_file="b"), {})
    with pytest.raises(UsageError, match="spaces or control"):
        resolve_token(_ns(token="a\r\nX-Evil: 1"), {})


def test_url_default_env_and_flag() -> None:
    out = io.StringIO()
    assert make_context(_ns(), {}, out, out).url == "http://127.0.0.1:6858"
    assert make_context(_ns(), {"TROOP_URL": "http://e:1"}, out, out).url == "http://e:1"
    assert make_context(_ns(url="http://f:2"), {"TROOP_URL": "http://e:1"}, out, out).url == (
        "http://f:2"
    )
