"""`troop scout list|restart|stop|upgrade`: the scouts themselves.

List reads `GET /hosts`.  Restart, stop and upgrade are jobs (`scout.restart`, `scout.stop`,
`scout.upgrade`), submitted and followed exactly as `troop cmd` is; render_plugins shows the
hosts.  An upgrade to a local wheel first puts the wheel on the General the way `troop file
push` puts SRC there: hashed, `HEAD /files/{sha256}`, and uploaded only if the General lacks it.
See docs/plugins.md for what the scout and scout_manager then do.
"""

from __future__ import annotations

import json
import os

from troop.cli.commands_jobs import base_body, submit
from troop.cli.errors import UsageError

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse

    from troop.cli.api import ApiClient, JsonObj
    from troop.cli.context import Context

WHEEL_SUFFIX = ".whl"
WHEEL_PREFIX = "troopstack-"  # the distribution's name; the General accepts nothing else


def run_list(ns: argparse.Namespace, ctx: Context) -> int:
    from troop.cli.tables import format_age, table

    console = ctx.console()
    data = ctx.client().get("/hosts")
    if ns.json:
        console.out(json.dumps(data, indent=2))
        return 0
    hosts = sorted(
        (h for h in data.get("hosts") or [] if isinstance(h, dict)),
        key=lambda h: str(h.get("hostname", "")),
    )
    if not hosts:
        console.err("no hosts")
        return 0
    rows = [
        [
            str(h.get("hostname", "")), scout_state(h), str(h.get("version") or "-"),
            str(h.get("os") or "-"), str(h.get("ip") or "-"),
            ",".join(str(t) for t in h.get("tags") or []) or "-",
            plugins_text(h.get("plugins")), format_age(h.get("last_seen")),
        ]
        for h in hosts
    ]
    headers = ["HOST", "STATE", "VERSION", "OS", "IP", "TAGS", "PLUGINS", "LAST SEEN"]
    # Every cell came from a scout's facts: never let them drive the terminal.
    console.out("\n".join(console.out_style.remote(line) for line in table(headers, rows)))
    return 0


def scout_state(host: JsonObj) -> str:
    """`online`/`offline` for an accepted scout, else its key state (`pending`, ...)."""
    state = str(host.get("state") or "-")
    if state != "accepted":
        return state
    return "online" if host.get("online") else "offline"


def plugins_text(plugins: object) -> str:
    """Installed plugins, `name:version` comma-separated (facts send a list of those)."""
    if isinstance(plugins, dict):
        items = [f"{k}:{v}" if v else str(k) for k, v in sorted(plugins.items())]
    elif isinstance(plugins, list):
        items = sorted(str(p) for p in plugins)
    else:
        items = []
    return ",".join(items) or "-"


def run_lifecycle(ns: argparse.Namespace, ctx: Context) -> int:
    """`troop scout restart|stop TARGET`."""
    return submit(ctx.client(), ctx.console(), ns, base_body(ns, f"scout.{ns.action}"))


def run_upgrade(ns: argparse.Namespace, ctx: Context) -> int:
    client, console = ctx.client(), ctx.console()
    body = base_body(ns, "scout.upgrade")
    if ns.to.endswith(WHEEL_SUFFIX):
        body["upgrade"] = put_wheel(client, ns.to)
    else:
        # A version: the General finds a wheel of it uploaded before, or answers 422.
        body["upgrade"] = {"version": ns.to}
    return submit(client, console, ns, body)


def put_wheel(client: ApiClient, path: str) -> JsonObj:
    """Make sure the General has the wheel at `path`; its `upgrade` object for the job.

    A value ending in .whl is always taken as a file: a missing one is a usage error here,
    not a version the General would search for in vain.
    """
    from troop.cli.commands_files import open_source, sha256_of, upload

    name = os.path.basename(path)
    if not name.startswith(WHEEL_PREFIX):
        raise UsageError(f"{path}: not a Troop wheel (expected {WHEEL_PREFIX}VERSION-...{WHEEL_SUFFIX})")
    with open_source(path) as stream:
        sha, size = sha256_of(stream, path)
        if not client.exists(f"/files/{sha}"):
            stream.seek(0)
            upload(client, stream, sha, size, name)
    return {"sha256": sha, "wheel": name}
