"""`troop host list`: what the General knows about each scout (and, in a cluster, where it is connected)."""

from __future__ import annotations

import json

from troop.cli.tables import format_age, table

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse

    from troop.cli.context import Context


def run_list(ns: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    data = ctx.client().get("/hosts")
    if ns.json:
        console.out(json.dumps(data, indent=2))
        return 0
    hosts = sorted(data.get("hosts") or [], key=lambda h: str(h.get("hostname", "")))
    if not hosts:
        console.err("no hosts")
        return 0
    style = console.out_style
    rows = [
        [
            str(h.get("hostname", "")), str(h.get("state") or "-"),
            "yes" if h.get("online") else "no", str(h.get("os") or "-"),
            str(h.get("ip") or "-"), ",".join(str(t) for t in h.get("tags") or []) or "-",
            str(h.get("version") or "-"), format_age(h.get("last_seen")),
        ]
        for h in hosts
    ]
    headers = ["HOST", "STATE", "ONLINE", "OS", "IP", "TAGS", "VERSION", "LAST SEEN"]
    if any(h.get("general") for h in hosts):  # a cluster: which General each scout is connected to
        headers.insert(3, "GENERAL")
        for row, h in zip(rows, hosts, strict=True):
            row.insert(3, str(h.get("general") or "-"))
    console.out("\n".join(style.remote(line) for line in table(headers, rows)))
    return 0
