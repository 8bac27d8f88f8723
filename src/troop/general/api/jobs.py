"""/api/v1/jobs: submit, read, wait for and stream jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from troop.general.api.deps import OperatorCaller, ViewerCaller, general
from troop.general.jobs import TargetNotAllowed
from troop.general.targeting import Target, TargetError
from troop.protocol import messages

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
MAX_WAIT = 3600.0


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
    kind: Literal["ping", "cmd"]
    target: TargetIn = Field(default_factory=TargetIn)  # type: ignore[arg-type]
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Seconds; the whole process group is killed then."
    )
    stream: bool = Field(False, description="Send output chunks as events while the job runs.")
    command: CommandIn | None = None


@router.post("", status_code=201, summary="Submit a job")
async def submit(
    body: JobIn,
    request: Request,
    caller: OperatorCaller,
    wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None,
) -> JSONResponse:
    gen = general(request)
    command = _command(body, gen.settings.max_output)
    target = Target(hosts=body.target.hosts, os=body.target.os, tags=body.target.tags, one=body.target.one)
    try:
        job = await gen.jobs.submit(
            body.kind,
            target,
            actor=caller.name,
            timeout=body.timeout,
            stream=body.stream,
            command=command,
            allowed=caller.targets,
        )
    except TargetError as exc:
        await gen.store.audit(caller.name, f"job.{body.kind}", target.describe(), False, {"error": str(exc)})
        raise HTTPException(404, str(exc)) from exc
    except TargetNotAllowed as exc:
        await gen.store.audit(caller.name, f"job.{body.kind}", target.describe(), False, {"error": str(exc)})
        raise HTTPException(403, str(exc)) from exc
    await gen.store.audit(
        caller.name,
        f"job.{body.kind}",
        target.describe(),
        True,
        {"job": job.id, "hosts": len(job.hosts), "args": job.args},
    )
    if wait is not None:
        await gen.jobs.wait(job, wait)
        return JSONResponse(job.to_json(), status_code=201)
    return JSONResponse({"job": job.id, "hosts": sorted(job.hosts), "state": job.state}, status_code=201)


def _command(body: JobIn, cap: int) -> messages.Command | None:
    if body.kind != "cmd":
        return None
    c = body.command
    if c is None or (not c.argv and not c.shell):
        raise HTTPException(422, "command: give argv or shell for a cmd job")
    if c.argv and c.shell:
        raise HTTPException(422, "command: give argv or shell, not both")
    return messages.Command(
        argv=c.argv,
        shell=c.shell,
        env=c.env,
        cwd=c.cwd,
        max_output=min(c.max_output if c.max_output is not None else cap, cap),
    )


@router.get("", summary="List recent jobs, newest first")
async def list_jobs(
    request: Request, caller: ViewerCaller, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    return {"jobs": await general(request).jobs.list(limit)}


@router.get("/{job_id}", summary="A job and every host's result; ?wait=SECONDS waits for it to end")
async def show(
    job_id: str, request: Request, caller: ViewerCaller, wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None
) -> dict[str, Any]:
    gen = general(request)
    job = await gen.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id[:64]!r}")
    if wait:
        await gen.jobs.wait(job, wait)
    return job.to_json()


@router.get("/{job_id}/events", summary="Newline-delimited JSON events until the job ends")
async def events(job_id: str, request: Request, caller: ViewerCaller) -> StreamingResponse:
    gen = general(request)
    job = await gen.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id[:64]!r}")
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
