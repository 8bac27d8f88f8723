"""Durable state: SQLAlchemy Core tables, their queries, and Alembic migrations.

One ``Store`` serves both deployments: a SQLite file (``sqlite+aiosqlite:///path``) for a
lone General, PostgreSQL (``postgresql+asyncpg://...``) shared by several.
"""

from troop.store.rows import AuditRow, DeniedKeyRow, GeneralRow, HostRow, JobHostRow, JobRow, TokenRow
from troop.store.store import Store
from troop.store.store_base import StoreUnavailable

__all__ = [
    "AuditRow",
    "DeniedKeyRow",
    "GeneralRow",
    "HostRow",
    "JobHostRow",
    "JobRow",
    "Store",
    "StoreUnavailable",
    "TokenRow",
]
