"""The durable schema, as SQLAlchemy Core tables.

Only portable types are used, so one Alembic history serves SQLite and PostgreSQL.
Every constraint and index gets an explicit name (see ``NAMING``): unnamed constraints
get database-chosen names that differ between SQLite and PostgreSQL, and a later
migration could not address them by name.

Changing anything here needs a new migration in ``migrations/versions``; a unit test
compares the migrated schema with this metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no timezone type: SQLAlchemy writes the wall-clock digits and drops
    tzinfo, so values are converted to UTC before writing (otherwise ordering and
    comparisons would mix zones) and get UTC re-attached when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value is ambiguous (local time? UTC?); refusing it finds the bug early.
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _ts(name: str, *, nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), nullable=nullable, index=index)


def _text(name: str, *, default: str | None = None, **kw: Any) -> sa.Column[str]:
    if default is None:
        return sa.Column(name, sa.Text(), nullable=False, **kw)
    return sa.Column(name, sa.Text(), nullable=False, default=default, server_default=default, **kw)


hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("hostname", sa.Text(), primary_key=True),
    _text("state"),  # pending | accepted | rejected
    sa.Column("public_key", sa.LargeBinary(), nullable=False),  # DER
    _text("fingerprint"),
    _text("os", default=""),
    _text("platform", default=""),
    _text("arch", default=""),
    _text("ip", default=""),
    _text("version", default=""),
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.Column("plugins", sa.JSON(), nullable=False),
    _ts("first_seen"),
    _ts("last_seen"),
    _ts("updated_at"),
)

denied_keys = sa.Table(
    "denied_keys",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _text("hostname", index=True),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),
    _text("fingerprint"),
    _ts("first_seen"),
    _ts("last_seen"),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.UniqueConstraint("hostname", "fingerprint"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    _text("kind"),
    sa.Column("target", sa.JSON(), nullable=False),
    sa.Column("args", sa.JSON(), nullable=False),
    sa.Column("timeout", sa.Float(), nullable=False),
    _text("created_by"),
    _ts("created_at", index=True),
    _ts("finished_at", nullable=True),
    _text("state"),  # running | done
    _text("owner", default=""),  # the General following it (cluster mode)
)

job_hosts = sa.Table(
    "job_hosts",
    metadata,
    sa.Column(
        "job_id",
        sa.Text(),
        sa.ForeignKey("jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("hostname", sa.Text(), primary_key=True),
    _text("task_id", unique=True),
    _text("state"),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("stdout", sa.LargeBinary(), nullable=False),
    sa.Column("stderr", sa.LargeBinary(), nullable=False),
    sa.Column("stdout_truncated", sa.Boolean(), nullable=False),
    sa.Column("stderr_truncated", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration", sa.Float(), nullable=True),
    sa.Column("late", sa.Boolean(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    _ts("updated_at"),
)

# Files kept by the FileManager, and which jobs need them: a blob no job refers to any
# more (its jobs were pruned) is deleted, after a grace period for uploads not yet used.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.Text(), primary_key=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    _ts("created_at"),
)

job_blobs = sa.Table(
    "job_blobs",
    metadata,
    sa.Column("job_id", sa.Text(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sha256", sa.Text(), primary_key=True, index=True),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    _text("name", unique=True),
    _text("role"),  # admin | operator | viewer
    _text("token_hash", unique=True),  # sha256 hex; the token itself is never stored
    _ts("created_at"),
    _text("created_by"),
    _ts("expires_at", nullable=True),
    _ts("revoked_at", nullable=True),
    _ts("last_used_at", nullable=True),
    # NULL means "any host"; none_as_null keeps Python None from becoming JSON 'null'.
    sa.Column("targets", sa.JSON(none_as_null=True), nullable=True),
)

audit = sa.Table(
    "audit",
    metadata,
    # Every API call is audited, so 2**31 rows is within reach. SQLite keeps INTEGER:
    # only that spelling makes the column the auto-assigned rowid.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    _ts("ts", index=True),
    _text("actor"),
    _text("action"),
    _text("target"),
    sa.Column("allowed", sa.Boolean(), nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
)

general_state = sa.Table(
    "general_state",
    metadata,
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("value", sa.LargeBinary(), nullable=False),
    _ts("updated_at"),
)

# Generals of a cluster: each refreshes seen_at every few seconds; a stale one is dead.
generals = sa.Table(
    "generals",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    _text("hostname", default=""),
    _text("api", default=""),
    _text("scouts", default=""),
    _ts("started_at"),
    _ts("seen_at"),
    sa.Column("online", sa.Integer(), nullable=False, default=0, server_default="0"),
)
