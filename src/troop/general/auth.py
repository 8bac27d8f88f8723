"""API tokens: random, shown once, kept only as a SHA-256 hash, with a role each.

Roles: viewer (read jobs, hosts, keys), operator (also run jobs), admin (also keys and
tokens). A token may be limited to host patterns. There is no default token: the first
start writes an admin token to DATA_DIR/admin.token (mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from troop.store import Store, TokenRow

log = logging.getLogger("troop.general.auth")
ROLES = ("viewer", "operator", "admin")
TOKEN_PREFIX = "troop_"  # noqa: S105 - a marker that makes leaked tokens easy to grep for
CACHE_SECONDS = 5.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def role_at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass
class Caller:
    token_id: str
    name: str
    role: str
    targets: list[str] | None


class AuthError(Exception):
    def __init__(self, status: int, message: str, token_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.token_name = token_name  # set when a real (revoked or expired) token was used


class TokenService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, TokenRow | None]] = {}
        self._last_touch: dict[str, float] = {}
        self.on_revoke: Callable[[], None] | None = None  # a cluster tells the other Generals

    def forget(self) -> None:
        """Drop cached lookups (another General revoked a token)."""
        self._cache.clear()

    async def ensure_admin(self, data_dir: Path) -> Path | None:
        """On first start, make an admin token and write it to a 0600 file."""
        if await self.store.count_tokens() > 0:
            return None
        try:
            token, _ = await self.create("admin", "admin", actor="troop-general")
        except IntegrityError:
            return None  # another General of the cluster, starting at the same time, made it
        path = data_dir / "admin.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.chmod(path, 0o600)
        return path

    async def create(
        self,
        name: str,
        role: str,
        *,
        actor: str,
        expires_in: float | None = None,
        targets: list[str] | None = None,
    ) -> tuple[str, TokenRow]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = TokenRow(
            id=secrets.token_hex(4),
            name=name,
            role=role,
            token_hash=hash_token(token),
            created_at=now,
            created_by=actor,
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
            revoked_at=None,
            last_used_at=None,
            targets=targets,
        )
        await self.store.add_token(row)
        return token, row

    async def revoke(self, id_or_name: str) -> TokenRow | None:
        row = await self.store.revoke_token(id_or_name, datetime.now(UTC))
        self._cache.clear()
        if row is not None and self.on_revoke is not None:
            self.on_revoke()
        return row

    async def check(self, header: str | None) -> Caller:
        if not header or not header.startswith("Bearer "):
            raise AuthError(401, "missing bearer token")
        token = header[7:].strip()
        digest = hash_token(token)
        row = await self._lookup(digest)
        # The lookup is by hash, so timing says nothing about the token; compare anyway.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise AuthError(401, "invalid token")
        now = datetime.now(UTC)
        if row.revoked_at is not None:
            raise AuthError(401, "token revoked", token_name=row.name)
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthError(401, "token expired", token_name=row.name)
        await self._touch(row.id, now)
        return Caller(token_id=row.id, name=row.name, role=row.role, targets=row.targets)

    async def _lookup(self, digest: str) -> TokenRow | None:
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        row = await self.store.token_by_hash(digest)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic(), row)
        return row

    async def _touch(self, token_id: str, now: datetime) -> None:
        # last_used_at to the minute is enough, and spares a write per request.
        mono = time.monotonic()
        if mono - self._last_touch.get(token_id, -1e9) > 60:
            self._last_touch[token_id] = mono
            await self.store.touch_token(token_id, now)
