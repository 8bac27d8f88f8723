"""Human rendering of job results: one block per host, a summary line, the exit status.

Pure functions from job dicts (the API's shape) to text, so tests need no server.  Colour is
plain ANSI SGR; `Style(color=False)` gives the same text without escapes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TextIO

    from troop.cli.api import JsonObj

    # render_host's signature: (name, result, style, *, width=0, output=True) -> str
    HostRenderer = Callable[..., str]

FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "lost", "refused", "offline"})
# Summary order: the good news first, then the ways a host can fall short.
STATE_ORDER = (
    "succeeded", "failed", "timed_out", "lost", "refused", "offline",
    "sent", "received", "running",
)
# Why a host gave no result, for states that carry no exit code.
NO_ANSWER = {
    "offline": "not connected when the job was sent",
    "sent": "did not answer",
    "received": "acknowledged, no result",
    "running": "still running",
    "timed_out": "no result before the timeout",
    "lost": "connection lost while running",
    "refused": "refused by blacklist or policy",
}
_STATE_WIDTH = max(len(s) for s in STATE_ORDER)

RED, GREEN, YELLOW, BOLD, DIM = "31", "32", "33", "1", "2"
# Job kinds whose hosts render_files shows (their results carry `data`, not output).
FILE_KINDS = frozenset({"file.push", "file.read", "file.ls"})
# Likewise for render_plugins; `plugin.run` is not among them: it is shown exactly like `cmd`.
PLUGIN_KINDS = frozenset(
    {"plugin.update", "plugin.versions", "scout.restart", "scout.stop", "scout.upgrade"}
)
# C0 controls except tab, and DEL: a remote host must not drive our operator's terminal.
_CONTROL = {c: f"^{chr(c + 64)}" for c in range(32) if c != 9} | {127: "^?"}


class Style:
    """How text is decorated: `color` for ANSI colour, `sanitize` to defuse remote escapes."""

    __slots__ = ("color", "sanitize")

    def __init__(self, color: bool = False, sanitize: bool = False) -> None:
        self.color = color
        self.sanitize = sanitize

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def remote(self, text: str) -> str:
        return text.translate(_CONTROL) if self.sanitize else text


def is_final(result: JsonObj) -> bool:
    """A host is done when its state is final, or it was sent and the General gave up on it."""
    state = result.get("state")
    return state in FINAL_STATES or (state == "sent" and bool(result.get("error")))


def style_for(stream: TextIO, environ: Mapping[str, str]) -> Style:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    return Style(color=tty and not environ.get("NO_COLOR"), sanitize=tty)


def state_color(state: str) -> str:
    if state == "succeeded":
        return GREEN
    return RED if state == "failed" else YELLOW


def name_and_state(name: str, result: JsonObj, style: Style, width: int = 0) -> list[str]:
    """The first two columns of every host line: the name (padded to `width`), the state."""
    state = str(result.get("state") or "unknown")
    return [
        style.paint(style.remote(name), BOLD) + " " * (width - len(name)),
        style.paint(state.ljust(_STATE_WIDTH), state_color(state)),
    ]


def host_header(name: str, result: JsonObj, style: Style, width: int = 0) -> str:
    state = str(result.get("state") or "unknown")
    parts = name_and_state(name, result, style, width)
    exit_code = result.get("exit_code")
    if exit_code is not None:
        parts.append(f"exit {exit_code}")
    elif state in NO_ANSWER:
        parts.append(NO_ANSWER[state])
    duration = result.get("duration")
    if isinstance(duration, int | float):
        parts.append(f"{duration:.3f}s")
    if result.get("late"):
        parts.append(style.paint("(late)", YELLOW))
    return "  ".join(parts).rstrip()


def indented(text: str, style: Style, code: str | None = None) -> list[str]:
    """Remote text as lines indented by two spaces, defused on a terminal."""
    lines = []
    for line in text.splitlines():
        shown = style.remote(line)
        lines.append("  " + (style.paint(shown, code) if code else shown))
    return lines


def result_data(result: JsonObj) -> JsonObj:
    """A host's `data` object (the result of a file, plugin or scout job); {} if absent."""
    data = result.get("data")
    return data if isinstance(data, dict) else {}


def data_header(name: str, result: JsonObj, style: Style, width: int, details: list[str]) -> str:
    """The host line of a job whose results carry `data`: name, state, why no answer, details."""
    parts = name_and_state(name, result, style, width)
    state = str(result.get("state") or "")
    if state in NO_ANSWER:
        parts.append(NO_ANSWER[state])
    parts += [d for d in details if d]
    if result.get("late"):
        parts.append(style.paint("(late)", YELLOW))
    return "  ".join(parts).rstrip()


def error_lines(result: JsonObj, style: Style) -> list[str]:
    error = result.get("error")
    return indented(f"error: {error}", style, RED) if error else []


def render_host(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """A host's block: header, then stdout, stderr (red), error (red), truncation notes.

    `output=False` leaves out stdout/stderr, for when --stream already printed them.
    """
    lines = [host_header(name, result, style, width)]
    if output:
        lines += indented(str(result.get("stdout") or ""), style)
    if result.get("stdout_truncated"):
        lines.append("  " + style.paint("(stdout truncated)", DIM))
    if output:
        lines += indented(str(result.get("stderr") or ""), style, RED)
    if result.get("stderr_truncated"):
        lines.append("  " + style.paint("(stderr truncated)", DIM))
    error = result.get("error")
    if error:
        lines += indented(f"error: {error}", style, RED)
    return "\n".join(lines)


def name_width(hosts: Mapping[str, Any]) -> int:
    return max((len(h) for h in hosts), default=0)


def host_renderer(kind: object) -> HostRenderer:
    """How a host of a job of this kind is shown: render_host, or a file/plugin job's renderer."""
    if kind in FILE_KINDS:
        from troop.cli.render_files import RENDERERS  # only file jobs pay for it

        return RENDERERS[str(kind)]
    if kind in PLUGIN_KINDS:
        from troop.cli.render_plugins import RENDERERS as PLUGIN_RENDERERS  # likewise

        return PLUGIN_RENDERERS[str(kind)]
    return render_host


def render_job(job: JsonObj, style: Style) -> str:
    """Every host of a job, in name order."""
    hosts: Mapping[str, JsonObj] = job.get("hosts") or {}
    width = name_width(hosts)
    render = host_renderer(job.get("kind"))
    return "\n".join(render(h, hosts[h], style, width=width) for h in sorted(hosts))


def count_states(hosts: Mapping[str, JsonObj]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in hosts.values():
        state = str(result.get("state") or "unknown")
        counts[state] = counts.get(state, 0) + 1
    return counts


def format_counts(counts: Mapping[str, int]) -> str:
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    ordered = sorted(counts, key=lambda s: (rank.get(s, len(rank)), s))
    return ", ".join(f"{counts[s]} {s}" for s in ordered if counts[s])


def summary_line(hosts: Mapping[str, JsonObj]) -> str:
    """E.g. `15 hosts: 14 succeeded, 1 failed`."""
    total = len(hosts)
    noun = "host" if total == 1 else "hosts"
    counts = format_counts(count_states(hosts))
    return f"{total} {noun}: {counts}" if counts else f"{total} {noun}"


def exit_status(hosts: Mapping[str, JsonObj]) -> int:
    """0 when every targeted host succeeded, else 1."""
    ok = all(r.get("state") == "succeeded" for r in hosts.values())
    return 0 if ok else 1
