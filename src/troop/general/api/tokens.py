"""/api/v1/tokens: API tokens (admin only). A token is shown once, when it is made."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from troop.general.api.endpoint import ApiError, Call, Endpoint


class TokenIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["admin", "operator", "viewer"]
    expires_in: float | None = Field(None, gt=0, allow_inf_nan=False, description="Seconds until it stops working.")
    targets: list[str] | None = Field(None, max_length=256, description="Host globs this token may target.")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def create_token(call: Call) -> Any:
    body: TokenIn = call.body
    gen = call.general
    if any(t.name == body.name for t in await gen.store.list_tokens()):
        raise ApiError(409, f"a token named {body.name!r} exists")
    token, row = await gen.tokens.create(
        body.name, body.role, actor=call.caller.name, expires_in=body.expires_in, targets=body.targets
    )
    await gen.store.audit(call.caller.name, "token.create", body.name, True, {"role": body.role, "id": row.id})
    return {"id": row.id, "name": row.name, "role": row.role, "token": token, "expires_at": _iso(row.expires_at)}


async def list_tokens(call: Call) -> Any:
    rows = await call.general.store.list_tokens()
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


async def revoke_token(call: Call) -> Any:
    gen, name = call.general, call.path("id_or_name")
    row = await gen.tokens.revoke(name)
    await gen.store.audit(call.caller.name, "token.revoke", name, row is not None, None)
    if row is None:
        raise ApiError(404, f"no active token {name[:64]!r}")
    return {"revoked": row.id}


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/tokens",
        create_token,
        "Create a token (shown once)",
        "tokens",
        role="admin",
        body=TokenIn,
        status=201,
    ),
    Endpoint("GET", "/api/v1/tokens", list_tokens, "List tokens (never their secret)", "tokens", role="admin"),
    Endpoint("DELETE", "/api/v1/tokens/{id_or_name}", revoke_token, "Revoke a token", "tokens", role="admin"),
]
