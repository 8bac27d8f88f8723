"""What a caller asks of the JobManager, and how a job's id, target and arguments are recorded."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from troop.general.targeting import Target
from troop.protocol import messages


class TargetNotAllowed(Exception):
    pass


class Remote(Protocol):
    """Scouts connected to other Generals of a cluster (troop.general.cluster)."""

    gid: str

    def holder(self, host: str) -> str | None: ...
    async def send_tasks(self, gid: str, items: list[tuple[str, messages.Task]]) -> dict[str, str]: ...
    def cancel(self, host: str, task_id: str) -> None: ...
    async def unknown_result(self, host: str, msg: messages.Result) -> bool: ...


@dataclass
class JobRequest:
    kind: str
    target: Target
    actor: str
    timeout: float | None = None
    stream: bool = False
    command: messages.Command | None = None
    args: dict[str, Any] = field(default_factory=dict)  # sent to every scout and stored with the job
    host_args: Callable[[str], dict[str, Any]] | None = None  # per scout, never stored: may hold keys
    blobs: list[str] = field(default_factory=list)  # FileManager blobs this job needs
    argv: list[str] | None = None  # what the blacklist checks, for jobs that run a program but not a command
    allowed: list[str] | None = None  # host globs the caller's token is limited to
    audited: bool = True  # an operator's job is audited (with the job, in one transaction); the General's own not


def job_id() -> str:
    # Sortable by time at a glance, unique by its random tail.
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)


def target_json(target: Target) -> dict[str, Any]:
    return {"hosts": target.hosts, "os": target.os, "tags": list(target.tags), "one": target.one}


def args_json(command: messages.Command | None, args: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(args or {})
    if command is not None:
        out["command"] = {
            "argv": command.argv,
            "shell": command.shell,
            "cwd": command.cwd,
            "env": sorted(command.env),
        }  # env values may be secrets: keep names only
    return out
