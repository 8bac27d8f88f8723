"""Human rendering of plugin and scout lifecycle jobs: one block per host.

Their results carry a `data` object (docs/plugins.md, "Job kinds"), so each kind has its own
block; `plugin.run` is not here, it is shown exactly like `cmd`.

    plugin.update     web1  succeeded
                        hello: v1.0.0 -> v1.1.0
                        scout_manager: v0.1.0 (unchanged)
    plugin.versions   web1  v1.1.0
                      web2  not installed
    scout.restart     web1  succeeded  restarted  0.2.0  pid 4242
    scout.stop        web1  succeeded  stopped
    scout.upgrade     web1  succeeded  0.1.0 -> 0.2.0
                      web2  failed     (rolled back)
                        error: the new scout did not confirm within 60 s

A host without a result shows why, and its error, as for `cmd`.  Everything the host sent goes
through `Style.remote`, so it cannot drive the terminal.  Imported by render.host_renderer only
when such a job is shown.
"""

from __future__ import annotations

from troop.cli.render import (
    DIM,
    RED,
    YELLOW,
    Style,
    data_header,
    error_lines,
    indented,
    name_and_state,
    result_data,
)

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from troop.cli.api import JsonObj

UNCHANGED = "(unchanged)"


def plugin_version(version: object) -> str:
    """Plugin versions as the repository names them: `v1.2.0` (the index may drop the `v`)."""
    text = str(version)
    return f"v{text}" if text[:1].isdigit() else text


def _stderr(result: JsonObj, style: Style, output: bool) -> list[str]:
    return indented(str(result.get("stderr") or ""), style, RED) if output else []


def render_update(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """The host line, then one line per plugin (`hello: v1.0.0 -> v1.1.0`), indented.

    The scout prints the same lines on stdout; stdout is shown only when `data` has none.
    """
    lines = [data_header(name, result, style, width, [])]
    changes = result_data(result).get("changes")
    if isinstance(changes, list):
        for change in changes:
            text = str(change)
            lines += indented(text, style, DIM if text.endswith(UNCHANGED) else None)
    elif output:
        lines += indented(str(result.get("stdout") or ""), style)
    lines += _stderr(result, style, output)
    return "\n".join(lines + error_lines(result, style))


def render_versions(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """`web1  v1.1.0` or `web1  not installed`; a host that did not answer as for any job."""
    if result.get("state") != "succeeded":
        return "\n".join([data_header(name, result, style, width, []), *error_lines(result, style)])
    version = result_data(result).get("version")
    parts = [
        name_and_state(name, result, style, width)[0],
        style.remote(plugin_version(version)) if version else style.paint("not installed", DIM),
    ]
    if result.get("late"):
        parts.append(style.paint("(late)", YELLOW))
    return "  ".join(parts)


def render_restart(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """`web1  succeeded  restarted  0.2.0  pid 4242`: the new scout's version and pid."""
    data = result_data(result)
    details = []
    if result.get("state") == "succeeded":
        details.append("restarted")
    if data.get("version"):
        details.append(style.remote(str(data["version"])))
    if data.get("pid") is not None:
        details.append(f"pid {style.remote(str(data['pid']))}")
    lines = [data_header(name, result, style, width, details), *_stderr(result, style, output)]
    return "\n".join(lines + error_lines(result, style))


def render_stop(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """`web1  succeeded  stopped` (the scout answers just before it stops)."""
    details = ["stopped"] if result.get("state") == "succeeded" else []
    lines = [data_header(name, result, style, width, details), *_stderr(result, style, output)]
    return "\n".join(lines + error_lines(result, style))


def render_upgrade(
    name: str, result: JsonObj, style: Style, *, width: int = 0, output: bool = True
) -> str:
    """`web1  succeeded  0.1.0 -> 0.2.0`; a failed upgrade shows `(rolled back)` and why."""
    data = result_data(result)
    details = []
    old, new = data.get("old"), data.get("new")
    if old or new:
        details.append(style.remote(f"{old or '?'} -> {new or '?'}"))
    if data.get("rolled_back"):
        details.append(style.paint("(rolled back)", YELLOW))
    lines = [data_header(name, result, style, width, details), *_stderr(result, style, output)]
    return "\n".join(lines + error_lines(result, style))


RENDERERS = {
    "plugin.update": render_update,
    "plugin.versions": render_versions,
    "scout.restart": render_restart,
    "scout.stop": render_stop,
    "scout.upgrade": render_upgrade,
}
