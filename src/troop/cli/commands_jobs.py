"""`troop ping`, `troop cmd`, `troop job show` and `troop job list`."""

from __future__ import annotations

import json

from troop.cli.api import quote
from troop.cli.follow import JobFollower
from troop.cli.render import exit_status, format_counts, render_job, summary_line
from troop.cli.tables import format_time, table

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    import argparse

    from troop.cli.api import ApiClient, JsonObj
    from troop.cli.console import Console
    from troop.cli.context import Context

# Extra patience on top of the job's own deadline before the events stream counts as stalled.
STREAM_GRACE = 30.0
INTERRUPTED = 130


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def base_body(ns: argparse.Namespace, kind: str) -> JsonObj:
    """The part of every POST /jobs body that comes from the target and job options."""
    return {
        "kind": kind,
        "target": {"hosts": ns.target, "os": ns.os, "tags": list(ns.tag), "one": ns.one},
        "timeout": _number(ns.timeout),
    }


def job_body(ns: argparse.Namespace, kind: str) -> JsonObj:
    """The POST /jobs body for ping or cmd, from parsed arguments."""
    body = base_body(ns, kind)
    body["stream"] = ns.stream
    if kind == "cmd":
        program = list(ns.program)
        body["command"] = {
            "argv": [] if ns.shell else program,
            "shell": " ".join(program) if ns.shell else None,
            "env": dict(ns.env),
            "cwd": ns.dir,
            "max_output": ns.max_output,
        }
    return body


def run_ping(ns: argparse.Namespace, ctx: Context) -> int:
    return _run_job(ns, ctx, job_body(ns, "ping"))


def run_cmd(ns: argparse.Namespace, ctx: Context) -> int:
    return _run_job(ns, ctx, job_body(ns, "cmd"))


def _run_job(ns: argparse.Namespace, ctx: Context, body: JsonObj) -> int:
    return submit(ctx.client(), ctx.console(), ns, body, live=ns.stream)


def submit(
    client: ApiClient, console: Console, ns: argparse.Namespace, body: JsonObj, *,
    live: bool = False,
) -> int:
    """POST the job, then print its id (--async) or follow it to the end."""
    created = client.post("/jobs", body)
    job_id = created.get("job")
    if ns.detach:
        console.out(json.dumps({"job": job_id}) if ns.json else str(job_id))
        return 0
    return follow(
        client, console, job_id, json_mode=ns.json, live=live,
        idle_timeout=ns.timeout + STREAM_GRACE, kind=body.get("kind"),
    )


def follow(
    client: ApiClient, console: Console, job_id: object, *,
    json_mode: bool, live: bool, idle_timeout: float | None, kind: str | None = None,
) -> int:
    """Wait for the job, printing as hosts finish; Ctrl-C leaves the job running.

    `kind` picks how hosts are shown; without it, the job's own kind (from the stream) does.
    """
    follower = JobFollower(
        client, console, job_id, human=not json_mode, live=live, idle_timeout=idle_timeout,
        kind=kind,
    )
    try:
        job = follower.run()
    except KeyboardInterrupt:
        console.clear()
        console.err(f"job {job_id} still running; see: troop job show {job_id}")
        return INTERRUPTED
    return report(console, job, json_mode=json_mode)


def report(console: Console, job: JsonObj, *, json_mode: bool) -> int:
    """The closing output of a job (JSON object, or the summary line) and the exit status."""
    hosts: dict[str, JsonObj] = job.get("hosts") or {}
    if json_mode:
        console.out(json.dumps(job, indent=2))
    else:
        console.err(summary_line(hosts))
    return exit_status(hosts)


def run_job_show(ns: argparse.Namespace, ctx: Context) -> int:
    client, console = ctx.client(), ctx.console()
    if ns.wait:
        # The stream's first event carries the job as it stands, so a done job costs nothing.
        return follow(client, console, ns.job_id, json_mode=ns.json, live=False,
                      idle_timeout=None)
    job = client.get(f"/jobs/{quote(ns.job_id)}")
    if not ns.json:
        text = render_job(job, console.out_style)
        if text:
            console.out(text)
        if job.get("state") != "done":
            console.err(f"job {job.get('job', ns.job_id)} still running; "
                        f"see: troop job show {ns.job_id} --wait")
    return report(console, job, json_mode=ns.json)


def _target_text(target: object) -> str:
    if not isinstance(target, dict):
        return str(target or "")
    parts = [str(target.get("hosts") or "")]
    if target.get("os"):
        parts.append(f"os={target['os']}")
    parts += [f"tag={t}" for t in target.get("tags") or []]
    if target.get("one"):
        parts.append("one")
    return " ".join(p for p in parts if p)


def run_job_list(ns: argparse.Namespace, ctx: Context) -> int:
    client, console = ctx.client(), ctx.console()
    data = client.get(f"/jobs?limit={ns.limit}")
    if ns.json:
        console.out(json.dumps(data, indent=2))
        return 0
    jobs = data.get("jobs") or []
    if not jobs:
        console.err("no jobs")
        return 0
    rows = [
        [
            str(j.get("job", "")), str(j.get("kind", "")), str(j.get("state", "")),
            format_time(j.get("created_at")), str(j.get("created_by") or "-"),
            _target_text(j.get("target")), format_counts(j.get("counts") or {}),
        ]
        for j in jobs
    ]
    headers = ["JOB", "KIND", "STATE", "CREATED", "BY", "TARGET", "HOSTS"]
    console.out("\n".join(table(headers, rows)))
    return 0
