"""Cluster mode: the General that owns each job, and the Generals of the cluster.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN with a constant default: no table rebuild on SQLite, instant on PostgreSQL.
    op.add_column("jobs", sa.Column("owner", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "generals",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False, server_default=""),
        sa.Column("api", sa.Text(), nullable=False, server_default=""),
        sa.Column("scouts", sa.Text(), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("online", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_generals"),
    )


def downgrade() -> None:
    op.drop_table("generals")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
