"""`troop plugin pull|list|update|versions|run`.

Pull and list are plain calls (`POST /plugins/pull`, `GET /plugins`) that print the General's
plugin index as a table; update, versions and run are jobs, submitted and followed exactly as
`troop cmd` is (commands_jobs.submit).  render_plugins shows update and versions hosts; run
hosts look like cmd's.  See docs/plugins.md.
"""

from __future__ import annotations

import json

from troop.cli.commands_jobs import base_body, submit

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable

    from troop.cli.api import JsonObj
    from troop.cli.console import Console
    from troop.cli.context import Context

# A pull clones or fetches a repository and stores every file: far longer than a plain call.
PULL_TIMEOUT = 600.0


def run_pull(ns: argparse.Namespace, ctx: Context) -> int:
    """Exit 0 even when files were skipped (they are reported); a failed pull raises (exit 2)."""
    console = ctx.console()
    index = ctx.client().post("/plugins/pull", {}, timeout=PULL_TIMEOUT)
    if ns.json:
        console.out(json.dumps(index, indent=2))
        return 0
    _print_index(console, index)
    for error in index.get("errors") or []:
        console.err(console.err_style.remote(f"skipped: {error_text(error)}"))
    return 0


def run_list(ns: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    index = ctx.client().get("/plugins")
    if ns.json:
        console.out(json.dumps(index, indent=2))
    else:
        _print_index(console, index)
    return 0


def update_body(ns: argparse.Namespace) -> JsonObj:
    name, version = ns.spec or (None, None)
    body = base_body(ns, "plugin.update")
    body["plugin"] = {"name": name, "version": version, "force": ns.force}
    return body


def versions_body(ns: argparse.Namespace) -> JsonObj:
    body = base_body(ns, "plugin.versions")
    body["plugin"] = {"name": ns.plugin}
    return body


def run_body(ns: argparse.Namespace) -> JsonObj:
    body = base_body(ns, "plugin.run")
    body["stream"] = ns.stream
    body["plugin"] = {"name": ns.plugin, "action": ns.plugin_action, "args": list(ns.plugin_args)}
    return body


def run_update(ns: argparse.Namespace, ctx: Context) -> int:
    return submit(ctx.client(), ctx.console(), ns, update_body(ns))


def run_versions(ns: argparse.Namespace, ctx: Context) -> int:
    return submit(ctx.client(), ctx.console(), ns, versions_body(ns))


def run_run(ns: argparse.Namespace, ctx: Context) -> int:
    return submit(ctx.client(), ctx.console(), ns, run_body(ns), live=ns.stream)


def _print_index(console: Console, index: JsonObj) -> None:
    from troop.cli.render_files import human_size
    from troop.cli.render_plugins import plugin_version
    from troop.cli.tables import table

    entries = sort_entries(p for p in index.get("plugins") or [] if isinstance(p, dict))
    if not entries:
        console.err("no plugins")
        return
    rows = [
        [
            str(p.get("name", "")), str(p.get("os") or "-"),
            plugin_version(p.get("version", "")), human_size(p.get("size")),
        ]
        for p in entries
    ]
    lines = table(["NAME", "OS", "VERSION", "SIZE"], rows)
    console.out("\n".join(console.out_style.remote(line) for line in lines))


def sort_entries(entries: Iterable[JsonObj]) -> list[JsonObj]:
    """By name and OS, and within each the newest version first."""
    newest_first = sorted(entries, key=lambda p: version_key(p.get("version")), reverse=True)
    return sorted(newest_first, key=lambda p: (str(p.get("name", "")), str(p.get("os", ""))))


def version_key(version: object) -> tuple[tuple[int, int | str], ...]:
    """`v1.10.0` > `v1.9.3`: numeric per dot-segment; a segment that is not a number sorts
    below any number (and such segments among themselves as text)."""
    text = str(version or "").removeprefix("v")
    return tuple((1, int(seg)) if seg.isdigit() else (0, seg) for seg in text.split("."))


def error_text(error: object) -> str:
    """A pull error as one line: the General sends text, or an object naming the file."""
    if isinstance(error, dict):
        where = error.get("file") or error.get("path")
        why = error.get("error") or error.get("reason") or error.get("message")
        if why is not None:
            return f"{where}: {why}" if where else str(why)
        return json.dumps(error, sort_keys=True)
    return str(error)
