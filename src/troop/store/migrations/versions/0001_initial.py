"""Initial schema: hosts, denied keys, jobs, job hosts, tokens, audit, General state.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Written by hand, frozen: it must not import troop.store.tables, whose later versions
describe later revisions. Types are the portable ones so SQLite and PostgreSQL share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, default: str | None = None) -> sa.Column[object]:
    return sa.Column(name, sa.Text(), nullable=False, server_default=default)


def _hosts_and_keys() -> None:
    op.create_table(
        "hosts",
        sa.Column("hostname", sa.Text(), nullable=False),
        _text("state"),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        _text("fingerprint"),
        *(_text(name, default="") for name in ("os", "platform", "arch", "ip", "version")),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("plugins", sa.JSON(), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("hostname", name="pk_hosts"),
    )
    op.create_table(
        "denied_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("hostname"),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        _text("fingerprint"),
        _ts("first_seen"),
        _ts("last_seen"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_denied_keys"),
        sa.UniqueConstraint("hostname", "fingerprint", name="uq_denied_keys_hostname_fingerprint"),
    )
    op.create_index("ix_denied_keys_hostname", "denied_keys", ["hostname"])


def _jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Text(), nullable=False),
        _text("kind"),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=False),
        _text("created_by"),
        _ts("created_at"),
        _ts("finished_at", nullable=True),
        _text("state"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_table(
        "job_hosts",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        _text("task_id"),
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
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_hosts_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "hostname", name="pk_job_hosts"),
        sa.UniqueConstraint("task_id", name="uq_job_hosts_task_id"),
    )


def _tokens_audit_state() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Text(), nullable=False),
        _text("name"),
        _text("role"),
        _text("token_hash"),
        _ts("created_at"),
        _text("created_by"),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        _ts("last_used_at", nullable=True),
        sa.Column("targets", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("name", name="uq_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_tokens_token_hash"),
    )
    op.create_table(
        "audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        _ts("ts"),
        _text("actor"),
        _text("action"),
        _text("target"),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"])
    op.create_table(
        "general_state",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("key", name="pk_general_state"),
    )


def upgrade() -> None:
    _hosts_and_keys()
    _jobs()
    _tokens_audit_state()


def downgrade() -> None:
    # Children before parents, for the foreign key.
    for table in ("general_state", "audit", "tokens", "job_hosts", "jobs", "denied_keys", "hosts"):
        op.drop_table(table)
