"""Plain records for table rows; field names match the column names exactly.

The General builds these to write and gets them back from reads. They are plain
mutable dataclasses (slots, for the memory of tens of thousands of hosts); the store
never keeps a reference to one after a call returns. Every datetime is timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class HostRow:
    hostname: str
    state: str = "pending"  # pending | accepted | rejected
    public_key: bytes = b""  # DER SubjectPublicKeyInfo
    fingerprint: str = ""
    os: str = ""
    platform: str = ""
    arch: str = ""
    ip: str = ""
    version: str = ""
    tags: list[str] = field(default_factory=list)
    plugins: list[Any] = field(default_factory=list)
    first_seen: datetime = field(default_factory=utcnow)
    last_seen: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class DeniedKeyRow:
    hostname: str
    public_key: bytes
    fingerprint: str
    first_seen: datetime = field(default_factory=utcnow)
    last_seen: datetime = field(default_factory=utcnow)
    attempts: int = 1
    id: int | None = None


@dataclass(slots=True)
class JobRow:
    id: str
    kind: str
    target: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    timeout: float = 0.0
    created_by: str = ""
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    state: str = "running"  # running | done
    owner: str = ""  # id of the General that follows the job (cluster mode); "" for a lone General


@dataclass(slots=True)
class JobHostRow:
    job_id: str
    hostname: str
    task_id: str
    state: str = "sent"  # offline|sent|received|running|succeeded|failed|timed_out|lost|refused
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = None
    duration: float | None = None
    late: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class TokenRow:
    id: str
    name: str
    role: str  # admin | operator | viewer
    token_hash: str  # sha256 hex of the token
    created_at: datetime = field(default_factory=utcnow)
    created_by: str = ""
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    targets: list[str] | None = None  # host glob patterns; None means any host


@dataclass(slots=True)
class AuditRow:
    actor: str
    action: str
    target: str
    allowed: bool
    detail: dict[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=utcnow)
    id: int | None = None  # assigned by the database


@dataclass(slots=True)
class GeneralRow:
    """One General process of a cluster, as it registered itself."""

    id: str
    hostname: str = ""
    api: str = ""
    scouts: str = ""
    started_at: datetime = field(default_factory=utcnow)
    seen_at: datetime = field(default_factory=utcnow)
    online: int = 0  # scouts connected to it at its last beat
