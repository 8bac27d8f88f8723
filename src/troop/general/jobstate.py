"""A job and its hosts in memory, and how they read as JSON and as store rows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from troop.store import JobHostRow, JobRow

# A host in one of these states has its answer; "sent" becomes final only at the deadline.
FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "lost", "refused", "offline"})
RESULT_STATES = frozenset({"succeeded", "failed", "timed_out", "refused"})
MAX_BACKLOG_BYTES = 8 * 1024 * 1024


@dataclass
class HostState:
    hostname: str
    task_id: str
    state: str
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = None
    duration: float | None = None
    late: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    final: bool = False
    has_result: bool = False

    def take(self, other: HostState) -> None:
        """Become `other` in place (jobs keep references to their HostState objects)."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(other, name))

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "exit_code": self.exit_code,
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "error": self.error,
            "duration": self.duration,
            "late": self.late,
            **({"data": self.data} if self.data else {}),
        }

    def to_row(self, job_id: str, now: datetime) -> JobHostRow:
        return JobHostRow(
            job_id=job_id,
            hostname=self.hostname,
            task_id=self.task_id,
            state=self.state,
            exit_code=self.exit_code,
            stdout=self.stdout,
            stderr=self.stderr,
            stdout_truncated=self.stdout_truncated,
            stderr_truncated=self.stderr_truncated,
            error=self.error,
            duration=self.duration,
            late=self.late,
            data=dict(self.data),
            updated_at=now,
        )

    @classmethod
    def from_row(cls, row: JobHostRow) -> HostState:
        return cls(
            hostname=row.hostname,
            task_id=row.task_id,
            state=row.state,
            exit_code=row.exit_code,
            stdout=row.stdout or b"",
            stderr=row.stderr or b"",
            stdout_truncated=bool(row.stdout_truncated),
            stderr_truncated=bool(row.stderr_truncated),
            error=row.error,
            duration=row.duration,
            late=bool(row.late),
            data=dict(row.data or {}),
            final=row.state in FINAL_STATES,
            has_result=row.state in RESULT_STATES,
        )


@dataclass
class Job:
    id: str
    kind: str
    target: dict[str, Any]
    args: dict[str, Any]
    timeout: float
    created_by: str
    created_at: datetime
    stream: bool = False
    state: str = "running"
    owner: str = ""  # the General following it, in cluster mode
    finishing: bool = False  # rows being committed; "done" only once they are
    finished_at: datetime | None = None
    hosts: dict[str, HostState] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    watchers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    # Output events already sent, so a stream that subscribes late still gets every line.
    backlog: list[dict[str, Any]] = field(default_factory=list)
    backlog_bytes: int = 0
    _order: list[HostState] | None = field(default=None, repr=False)
    _cursor: int = field(default=0, repr=False)

    def all_final(self) -> bool:
        # Called on every result: a cursor over hosts that only ever become final keeps a
        # 10,000-host job from rescanning all of them each time (O(n) in all, not O(n^2)).
        if self._order is None:
            self._order = list(self.hosts.values())
        while self._cursor < len(self._order) and self._order[self._cursor].final:
            self._cursor += 1
        return self._cursor == len(self._order)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "created_by": self.created_by,
            "target": self.target,
            "timeout": self.timeout,
            "hosts": {name: h.to_json() for name, h in sorted(self.hosts.items())},
        }

    def to_row(self) -> JobRow:
        return JobRow(
            id=self.id,
            kind=self.kind,
            target=self.target,
            args=self.args,
            timeout=self.timeout,
            created_by=self.created_by,
            created_at=self.created_at,
            finished_at=self.finished_at,
            state=self.state,
            owner=self.owner,
        )

    @classmethod
    def from_rows(cls, row: JobRow, hosts: list[JobHostRow]) -> Job:
        job = cls(
            id=row.id,
            kind=row.kind,
            target=dict(row.target or {}),
            args=dict(row.args or {}),
            timeout=row.timeout,
            created_by=row.created_by,
            created_at=row.created_at,
            state=row.state,
            owner=row.owner,
            finished_at=row.finished_at,
            hosts={h.hostname: HostState.from_row(h) for h in hosts},
        )
        if job.state == "done":
            job.done.set()
        return job

    def notify(self, event: dict[str, Any]) -> None:
        if event["event"] == "output" and self.backlog_bytes < MAX_BACKLOG_BYTES:
            self.backlog.append(event)
            self.backlog_bytes += len(event["data"])
        for queue in self.watchers:
            queue.put_nowait(event)
