"""Rendering job results for humans and scripts, and the exit status they imply."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.unit.fakeapi import cmd_result as result
from troop.cli.commands_jobs import follow, report
from troop.cli.console import Console
from troop.cli.render import (
    Style,
    exit_status,
    render_host,
    render_job,
    style_for,
    summary_line,
)
from troop.cli.tables import format_age, format_time, table

PLAIN = Style()


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


JOB: dict[str, Any] = {
    "job": 42,
    "kind": "cmd",
    "state": "done",
    "hosts": {
        "web1": result("succeeded", exit_code=0, stdout="hello\nworld\n", duration=0.012),
        "web10": result(
            "failed", exit_code=3, stdout="partial", stderr="oops\n", duration=1.5,
            stdout_truncated=True,
        ),
        "db1": result("offline"),
        "db2": result("sent", error="no ack"),
    },
}


def test_success_block_is_header_then_indented_stdout() -> None:
    text = render_host("web1", JOB["hosts"]["web1"], PLAIN)
    assert text == "web1  succeeded  exit 0  0.012s\n  hello\n  world"


def test_failure_block_has_stderr_and_truncation_note() -> None:
    text = render_host("web10", JOB["hosts"]["web10"], PLAIN)
    assert text.splitlines() == [
        "web10  failed     exit 3  1.500s",
        "  partial",
        "  (stdout truncated)",
        "  oops",
    ]


def test_hosts_that_did_not_answer_say_why() -> None:
    assert render_host("db1", JOB["hosts"]["db1"], PLAIN) == (
        "db1  offline    not connected when the job was sent"
    )
    assert render_host("db2", JOB["hosts"]["db2"], PLAIN).splitlines() == [
        "db2  sent       did not answer",
        "  error: no ack",
    ]
    timed = render_host("x", result("timed_out", duration=5.0), PLAIN)
    assert timed == "x  timed_out  no result before the timeout  5.000s"


def test_job_is_rendered_in_host_order_with_aligned_names() -> None:
    lines = render_job(JOB, PLAIN).splitlines()
    headers = [line for line in lines if not line.startswith("  ")]
    assert [h.split()[0] for h in headers] == ["db1", "db2", "web1", "web10"]
    assert headers[0].startswith("db1    offline")  # padded to "web10"


def test_colour_marks_state_stderr_and_error() -> None:
    style = Style(color=True)
    text = render_host("web10", JOB["hosts"]["web10"], style)
    assert "\x1b[31mfailed" in text
    assert "\x1b[31moops\x1b[0m" in text
    assert "\x1b[32msucceeded" in render_host("web1", JOB["hosts"]["web1"], style)
    assert "\x1b[31merror: no ack\x1b[0m" in render_host("db2", JOB["hosts"]["db2"], style)


def test_remote_escapes_are_defused_on_a_terminal() -> None:
    hostile = result("succeeded", exit_code=0, stdout="\x1b]0;pwned\x07\x1b[2Jtext")
    shown = render_host("h", hostile, Style(color=True, sanitize=True))
    assert "\x1b]" not in shown and "\x1b[2J" not in shown
    assert "^[]0;pwned^G^[[2Jtext" in shown
    assert "\x1b[2J" in render_host("h", hostile, PLAIN)  # a pipe gets the bytes as they are


def test_style_follows_tty_and_no_color() -> None:
    def flags(style: Style) -> tuple[bool, bool]:
        return style.color, style.sanitize

    assert flags(style_for(io.StringIO(), {})) == (False, False)
    assert flags(style_for(FakeTty(), {})) == (True, True)
    assert flags(style_for(FakeTty(), {"NO_COLOR": "1"})) == (False, True)


def test_summary_line_and_exit_status() -> None:
    hosts = {f"h{i}": result("succeeded") for i in range(14)} | {"bad": result("failed")}
    assert summary_line(hosts) == "15 hosts: 14 succeeded, 1 failed"
    assert exit_status(hosts) == 1
    assert summary_line(JOB["hosts"]) == "4 hosts: 1 succeeded, 1 failed, 1 offline, 1 sent"
    assert summary_line({"a": result("succeeded")}) == "1 host: 1 succeeded"
    assert exit_status({"a": result("succeeded")}) == 0
    assert exit_status({"a": result("succeeded"), "b": result("timed_out")}) == 1


def test_streamed_output_is_not_repeated_but_notes_are() -> None:
    text = render_host("web10", JOB["hosts"]["web10"], PLAIN, output=False)
    assert text.splitlines() == ["web10  failed     exit 3  1.500s", "  (stdout truncated)"]


def console(out: io.StringIO, err: io.StringIO, *, bar: bool = False) -> Console:
    return Console(out, err, out_style=PLAIN, err_style=PLAIN, bar=bar)


def test_json_report_is_one_object_with_the_stable_keys() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert report(console(out, err), JOB, json_mode=True) == 1
    data = json.loads(out.getvalue())
    assert data["job"] == 42
    for host in data["hosts"].values():
        assert {"state", "exit_code", "stdout", "stderr", "error", "duration"} <= set(host)
    assert err.getvalue() == ""


def test_human_report_puts_the_summary_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    ok_job = {"job": 1, "hosts": {"a": result("succeeded", exit_code=0)}}
    assert report(console(out, err), ok_job, json_mode=False) == 0
    assert out.getvalue() == ""
    assert err.getvalue() == "1 host: 1 succeeded\n"


def test_progress_bar_only_on_a_terminal_and_cleared_before_output() -> None:
    out, err = io.StringIO(), FakeTty()
    con = console(out, err, bar=True)
    con.progress(3, 15)
    assert err.getvalue().endswith("[####----------------] 3/15 hosts, 12 out")
    con.out("web1  succeeded")
    assert err.getvalue().endswith("\r\x1b[K")
    quiet_err = io.StringIO()
    Console.for_streams(io.StringIO(), quiet_err, {}).progress(3, 15)
    assert quiet_err.getvalue() == ""


class InterruptedClient:
    """Stands in for ApiClient: the stream yields one event, then the operator hits Ctrl-C."""

    def events(self, path: str, *, idle_timeout: float | None) -> Any:
        yield {"event": "job", "job": {"job": 7, "state": "running", "hosts": {"a": {}}}}
        raise KeyboardInterrupt


def test_ctrl_c_while_waiting_names_the_job_and_exits_130() -> None:
    out, err = io.StringIO(), io.StringIO()
    status = follow(
        InterruptedClient(), console(out, err), 7,  # type: ignore[arg-type]
        json_mode=False, live=False, idle_timeout=None,
    )
    assert status == 130
    assert err.getvalue() == "job 7 still running; see: troop job show 7\n"


def test_table_aligns_columns() -> None:
    assert table(["A", "LONG"], [["xyz", "1"], ["q", "22"]]) == ["A    LONG", "xyz  1", "q    22"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "-"), ("", "-"), ("not a time", "not a time")],
)
def test_format_time_edge_cases(value: object, expected: str) -> None:
    assert format_time(value) == expected


def test_times_from_epoch_and_iso_agree() -> None:
    assert format_time(0) == format_time("1970-01-01T00:00:00Z")
    assert format_age(1000, now=1012) == "12s ago"
    assert format_age("1970-01-01T00:00:00+00:00", now=7300) == "2h ago"
    assert format_age(None) == "-"
