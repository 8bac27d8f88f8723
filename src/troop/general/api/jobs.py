"""/api/v1/jobs: submit, read, wait for and stream jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, StreamingResponse

from troop.general.api.endpoint import ApiError, Call, Endpoint, QueryParam
from troop.general.api.files import FileIn, file_job
from troop.general.api.plugins import PluginIn, UpgradeIn, plugin_job
from troop.general.jobs import JobRequest, TargetNotAllowed
from troop.general.targeting import Target, TargetError
from troop.protocol import messages

MAX_WAIT = 3600.0
WAIT = QueryParam("wait", float, "Seconds to wait for the job to end before answering.", None, 0, MAX_WAIT)


class TargetIn(BaseModel):
    hosts: str = Field("*", max_length=4096, description="Comma list of host names or globs; '*' for all.")
    os: str | None = Field(None, max_length=32, description="Only hosts with this OS (lowercase, e.g. linux).")
    tags: list[str] = Field(default_factory=list, max_length=32, description="Every tag must match.")
    one: bool = Field(False, description="One online host of the matches, chosen at random.")


class CommandIn(BaseModel):
    argv: list[str] = Field(default_factory=list, max_length=4096)
    shell: str | None = Field(None, max_length=65536, description="Run this string through the host's shell.")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(None, max_length=4096)
    max_output: int | None = Field(None, ge=0, le=64 * 1024 * 1024, description="Bytes kept per stream.")


class JobIn(BaseModel):
    kind: Literal[
        "ping", "cmd", "file.push", "file.read", "file.ls", "plugin.update", "plugin.versions", "plugin.run",
        "scout.restart", "scout.stop", "scout.upgrade",
    ]
    target: TargetIn = Field(default_factory=TargetIn)  # type: ignore[arg-type]
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Seconds; the whole process group is killed then."
    )
    stream: bool = Field(False, description="Send output chunks as events while the job runs.")
    command: CommandIn | None = None
    file: FileIn | None = None
    plugin: PluginIn | None = None
    upgrade: UpgradeIn | None = None


async def submit_job(call: Call) -> Any:
    body: JobIn = call.body
    gen, caller = call.general, call.caller
    target = Target(hosts=body.target.hosts, os=body.target.os, tags=body.target.tags, one=body.target.one)
    req = JobRequest(body.kind, target, caller.name, timeout=body.timeout, stream=body.stream, allowed=caller.targets)
    if body.kind == "cmd":
        req.command = _command(body, gen.settings.max_output)
    elif body.kind.startswith("file."):
        await file_job(gen, body, req)
    elif body.kind.startswith(("plugin.", "scout.")):
        await plugin_job(gen, body, req)
    try:
        job = await gen.jobs.submit(req)
    except (TargetError, TargetNotAllowed) as exc:
        await gen.store.audit(caller.name, f"job.{body.kind}", target.describe(), False, {"error": str(exc)})
        raise ApiError(404 if isinstance(exc, TargetError) else 403, str(exc)) from exc
    # The job's audit row was written with the job itself, in one transaction.
    if call.query["wait"] is not None:
        await gen.jobs.wait(job, call.query["wait"])
        return JSONResponse(job.to_json(), status_code=201)
    return {"job": job.id, "hosts": sorted(job.hosts), "state": job.state}


def _command(body: JobIn, cap: int) -> messages.Command:
    c = body.command
    if c is None or (not c.argv and not c.shell):
        raise ApiError(422, "command: give argv or shell for a cmd job")
    if c.argv and c.shell:
        raise ApiError(422, "command: give argv or shell, not both")
    return messages.Command(
        argv=c.argv,
        shell=c.shell,
        env=c.env,
        cwd=c.cwd,
        max_output=min(c.max_output if c.max_output is not None else cap, cap),
    )


async def list_jobs(call: Call) -> Any:
    return {"jobs": await call.general.jobs.list(int(call.query["limit"]))}


async def show_job(call: Call) -> Any:
    job = await call.general.jobs.get(call.path("job_id"))
    if job is None:
        raise ApiError(404, f"no job {call.path('job_id')[:64]!r}")
    if call.query["wait"]:
        await call.general.jobs.wait(job, call.query["wait"])
    return job.to_json()


async def job_events(call: Call) -> Any:
    job = await call.general.jobs.get(call.path("job_id"))
    if job is None:
        raise ApiError(404, f"no job {call.path('job_id')[:64]!r}")
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    job.watchers.add(queue)  # subscribe before the snapshot: no event falls between them
    snapshot, backlog = job.to_json(), list(job.backlog)

    async def lines() -> AsyncIterator[bytes]:
        try:
            yield _line({"event": "job", "job": snapshot})
            for event in backlog:
                yield _line(event)
            if job.state == "done":
                yield _line({"event": "done", "job": job.to_json()})
                return
            while True:
                event = await queue.get()
                yield _line(event)
                if event["event"] == "done":
                    return
        finally:
            job.watchers.discard(queue)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/jobs",
        submit_job,
        "Submit a job; ?wait=SECONDS answers with the finished job",
        "jobs",
        role="operator",
        body=JobIn,
        query=(WAIT,),
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/v1/jobs",
        list_jobs,
        "List recent jobs, newest first",
        "jobs",
        query=(QueryParam("limit", int, "How many jobs.", 50, 1, 1000),),
    ),
    Endpoint("GET", "/api/v1/jobs/{job_id}", show_job, "A job and every host's result", "jobs", query=(WAIT,)),
    Endpoint(
        "GET",
        "/api/v1/jobs/{job_id}/events",
        job_events,
        "Newline-delimited JSON events until the job ends",
        "jobs",
        ndjson=True,
    ),
]
