"""`troop key list|accept|reject|delete|rotate`: the scout key workflow."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse

    from troop.cli.context import Context


GROUPS = ("accepted", "pending", "rejected", "denied")


def run_list(ns: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    keys = ctx.client().get("/keys")
    if ns.json:
        console.out(json.dumps({**keys, **{g: keys.get(g) or [] for g in GROUPS}}, indent=2))
        return 0
    lines = []
    for group in GROUPS:
        names = sorted(str(n) for n in keys.get(group) or [])
        lines.append(console.out_style.paint(f"{group.capitalize()} ({len(names)}):", "1"))
        # Names come from scouts, pending ones included: never let them drive the terminal.
        lines += [f"  {console.out_style.remote(name)}" for name in names]
    console.out("\n".join(lines))
    return 0


def run_change(ns: argparse.Namespace, ctx: Context) -> int:
    """Accept, reject or delete keys; exit 1 if the General refused any of the hosts."""
    console = ctx.console()
    body = {"all": True} if ns.all else {"hosts": list(ns.hosts)}
    reply = ctx.client().post(f"/keys/{ns.action}", body)
    changed = [str(h) for h in reply.get("changed") or []]
    errors = {str(h): str(m) for h, m in (reply.get("errors") or {}).items()}
    if ns.json:
        console.out(json.dumps(reply, indent=2))
    else:
        verb = {"accept": "accepted", "reject": "rejected", "delete": "deleted"}[ns.action]
        for host in changed:
            console.out(f"{verb} {host}")
        if not changed and not errors:
            console.err(f"troop: no keys {verb}")
        for host, message in sorted(errors.items()):
            console.err(f"troop: {host}: {message}")
    return 1 if errors else 0


def run_rotate(ns: argparse.Namespace, ctx: Context) -> int:
    console = ctx.console()
    reply = ctx.client().post("/keys/rotate", {})
    if ns.json:
        console.out(json.dumps(reply, indent=2))
    else:
        console.out(
            f"rotated the session key: key id {reply.get('key_id')}, "
            f"sent to {reply.get('scouts', 0)} connected scouts"
        )
    return 0
