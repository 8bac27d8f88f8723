"""Queries on API tokens, the audit trail and the General's own state."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from troop.store.rows import AuditRow, TokenRow, utcnow
from troop.store.store_base import StoreBase, Upsert, params, to_row, to_rows
from troop.store.tables import audit as audit_table
from troop.store.tables import general_state, tokens


class TokenQueries(StoreBase):
    async def add_token(self, row: TokenRow) -> None:
        async with self._write() as conn:
            await conn.execute(sa.insert(tokens), [params(row)])

    async def token_by_hash(self, token_hash: str) -> TokenRow | None:
        stmt = sa.select(tokens).where(tokens.c.token_hash == token_hash)
        async with self._read() as conn:
            found = to_rows(TokenRow, await conn.execute(stmt))
        return found[0] if found else None

    async def list_tokens(self) -> list[TokenRow]:
        stmt = sa.select(tokens).order_by(tokens.c.created_at, tokens.c.name)
        async with self._read() as conn:
            return to_rows(TokenRow, await conn.execute(stmt))

    async def revoke_token(self, id_or_name: str, when: datetime) -> TokenRow | None:
        """Revoke by id, else by name; None if unknown or already revoked.

        The id is tried first so a token can never be revoked in place of another
        whose name happens to equal its id.
        """
        async with self._write() as conn:
            for column in (tokens.c.id, tokens.c.name):
                stmt = (
                    sa.update(tokens)
                    .where(column == id_or_name, tokens.c.revoked_at.is_(None))
                    .values(revoked_at=when)
                    .returning(*tokens.c)
                )
                row = (await conn.execute(stmt)).first()
                if row is not None:
                    return to_row(TokenRow, row._asdict())
                exists = await conn.execute(sa.select(tokens.c.id).where(column == id_or_name))
                if exists.first() is not None:
                    return None  # matched, but already revoked
        return None

    async def touch_token(self, token_id: str, when: datetime) -> None:
        stmt = sa.update(tokens).where(tokens.c.id == token_id).values(last_used_at=when)
        async with self._write() as conn:
            await conn.execute(stmt)

    async def count_tokens(self) -> int:
        """Every token ever issued, revoked and expired ones included."""
        async with self._read() as conn:
            n = await conn.scalar(sa.select(sa.func.count()).select_from(tokens))
        return int(n or 0)

    async def audit(
        self,
        actor: str,
        action: str,
        target: str,
        allowed: bool,
        detail: dict[str, Any] | None = None,
    ) -> None:
        row = AuditRow(
            actor=actor, action=action, target=target, allowed=allowed, detail=detail or {}
        )
        await self.audit_many([row])

    async def audit_many(self, rows: list[AuditRow]) -> None:
        if not rows:
            return
        async with self._write() as conn:
            await conn.execute(sa.insert(audit_table), [params(r, skip=("id",)) for r in rows])

    async def list_audit(self, limit: int = 100) -> list[AuditRow]:
        """Newest first."""
        stmt = (
            sa.select(audit_table)
            .order_by(audit_table.c.ts.desc(), audit_table.c.id.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            return to_rows(AuditRow, await conn.execute(stmt))

    async def get_state(self, key: str) -> bytes | None:
        stmt = sa.select(general_state.c.value).where(general_state.c.key == key)
        async with self._read() as conn:
            value = await conn.scalar(stmt)
        return None if value is None else bytes(value)

    @functools.cached_property
    def _state_upsert(self) -> Upsert:
        stmt = self._upsert(general_state)
        return stmt.on_conflict_do_update(
            index_elements=[general_state.c.key],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )

    async def set_state(self, key: str, value: bytes) -> None:
        async with self._write() as conn:
            await conn.execute(
                self._state_upsert, {"key": key, "value": value, "updated_at": utcnow()}
            )
