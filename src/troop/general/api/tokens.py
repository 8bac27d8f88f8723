"""/api/v1/tokens: API tokens (admin only). A token is shown once, when it is made."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from troop.general.api.deps import AdminCaller, general

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["admin", "operator", "viewer"]
    expires_in: float | None = Field(None, gt=0, description="Seconds until the token stops working.")
    targets: list[str] | None = Field(None, max_length=256, description="Host globs this token may target.")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@router.post("", status_code=201, summary="Create a token (shown once)")
async def create(
    body: TokenIn,
    request: Request,
    caller: AdminCaller,
) -> dict[str, Any]:
    gen = general(request)
    if any(t.name == body.name for t in await gen.store.list_tokens()):
        raise HTTPException(409, f"a token named {body.name!r} exists")
    token, row = await gen.tokens.create(
        body.name, body.role, actor=caller.name, expires_in=body.expires_in, targets=body.targets
    )
    await gen.store.audit(caller.name, "token.create", body.name, True, {"role": body.role, "id": row.id})
    return {"id": row.id, "name": row.name, "role": row.role, "token": token, "expires_at": _iso(row.expires_at)}


@router.get("", summary="List tokens (never their secret)")
async def list_tokens(
    request: Request,
    caller: AdminCaller,
) -> dict[str, Any]:
    rows = await general(request).store.list_tokens()
    return {
        "tokens": [
            {
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "created_at": _iso(r.created_at),
                "expires_at": _iso(r.expires_at),
                "revoked_at": _iso(r.revoked_at),
                "last_used_at": _iso(r.last_used_at),
                "targets": r.targets,
            }
            for r in rows
        ]
    }


@router.delete("/{id_or_name}", summary="Revoke a token")
async def revoke(
    id_or_name: str,
    request: Request,
    caller: AdminCaller,
) -> dict[str, str]:
    gen = general(request)
    row = await gen.tokens.revoke(id_or_name)
    await gen.store.audit(caller.name, "token.revoke", id_or_name, row is not None, None)
    if row is None:
        raise HTTPException(404, f"no active token {id_or_name[:64]!r}")
    return {"revoked": row.id}
