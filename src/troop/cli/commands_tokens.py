"""`troop token create|list|revoke`: API tokens."""

from __future__ import annotations

import json
import time

from troop.cli.api import quote
from troop.cli.tables import format_time, table, to_epoch

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse

    from troop.cli.context import Context


def run_create(ns: argparse.Namespace, ctx: Context) -> int:
    """Print the new token alone on stdout (so `$(troop token create ...)` captures it)."""
    console = ctx.console()
    body = {"name": ns.name, "role": ns.role, "expires_in": ns.expires, "targets": ns.targets}
    reply = ctx.client().post("/tokens", body)
    if ns.json:
        console.out(json.dumps(reply, indent=2))
    else:
        console.out(str(reply.get("token", "")))
    expires = format_time(reply.get("expires_at"))
    console.err(
        f"troop: token {reply.get('name', ns.name)!r} (id {reply.get('id')}, role "
        f"{reply.get('role', ns.role)}, expires {'never' if expires == '-' else expires}) "
        "is shown only this once; store it now"
    )
    return 0


def _status(token: dict[str, object], now: float) -> str:
    if token.get("revoked_at"):
        return "revoked"
    expires = to_epoch(token.get("expires_at"))
    return "expired" if expires is not None and expires <= now else "active"


def run_list(ns: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    data = ctx.client().get("/tokens")
    if ns.json:
        console.out(json.dumps(data, indent=2))
        return 0
    tokens = data.get("tokens") or []
    if not tokens:
        console.err("no tokens")
        return 0
    now = time.time()
    rows = [
        [
            str(t.get("id", "")), str(t.get("name", "")), str(t.get("role", "")), _status(t, now),
            format_time(t.get("created_at")), format_time(t.get("expires_at")),
            format_time(t.get("last_used_at")), ",".join(t.get("targets") or []) or "*",
        ]
        for t in tokens
    ]
    headers = ["ID", "NAME", "ROLE", "STATUS", "CREATED", "EXPIRES", "LAST USED", "TARGETS"]
    console.out("\n".join(table(headers, rows)))
    return 0


def run_revoke(ns: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    reply = ctx.client().delete(f"/tokens/{quote(ns.token_ref)}")
    if ns.json:
        console.out(json.dumps(reply, indent=2))
    else:
        console.out(f"revoked token {reply.get('revoked', ns.token_ref)}")
    return 0
