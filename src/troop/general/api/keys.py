"""/api/v1/keys and /api/v1/hosts: the key workflow and the host inventory."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from troop.general.api.deps import AdminCaller, ViewerCaller, general

router = APIRouter(prefix="/api/v1", tags=["keys"])


class KeyChange(BaseModel):
    hosts: list[str] = Field(default_factory=list, max_length=100000)
    all: bool = Field(False, description="Every pending host (accept, reject) or every host (delete).")


@router.get("/keys", summary="Host names by key state")
async def list_keys(
    request: Request,
    caller: ViewerCaller,
) -> dict[str, list[str]]:
    return general(request).keys.lists()


@router.post("/keys/rotate", summary="Rotate the session key; every connected scout is re-keyed")
async def rotate(
    request: Request,
    caller: AdminCaller,
) -> dict[str, int]:
    gen = general(request)
    key_id = gen.hub.rotate("operator " + caller.name)
    await gen.store.audit(caller.name, "key.rotate", "*", True, {"key_id": key_id})
    return {"key_id": key_id, "scouts": len(gen.hub.online)}


@router.post("/keys/{action}", summary="Accept, reject or delete host keys")
async def change(
    action: Literal["accept", "reject", "delete"],
    body: KeyChange,
    request: Request,
    caller: AdminCaller,
) -> dict[str, Any]:
    gen = general(request)
    names = gen.keys.names_for_all(action) if body.all else body.hosts
    if not names and not body.all:
        raise HTTPException(422, "hosts: name at least one host, or set all")
    changed, errors = await gen.keys.change(action, names, caller.name)
    return {"changed": changed, "errors": errors}


@router.get("/hosts", summary="Every known host with its facts and whether it is online")
async def hosts(
    request: Request,
    caller: ViewerCaller,
) -> dict[str, Any]:
    gen = general(request)
    out = []
    for row in sorted(gen.keys.hosts.values(), key=lambda r: r.hostname):
        out.append(
            {
                "hostname": row.hostname,
                "state": row.state,
                "online": gen.hub.is_online(row.hostname),
                "os": row.os,
                "ip": row.ip,
                "tags": row.tags,
                "version": row.version,
                "plugins": row.plugins,
                "last_seen": row.last_seen.isoformat() if row.last_seen else None,
                "fingerprint": row.fingerprint,
            }
        )
    return {"hosts": out}
