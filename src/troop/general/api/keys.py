"""/api/v1/keys and /api/v1/hosts: the key workflow and the host inventory."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from troop.general.api.endpoint import ApiError, Call, Endpoint

ACTIONS = ("accept", "reject", "delete")


class KeyChange(BaseModel):
    hosts: list[str] = Field(default_factory=list, max_length=100000)
    all: bool = Field(False, description="Every pending host (accept, reject) or every host (delete).")


async def list_keys(call: Call) -> Any:
    return call.general.keys.lists()


async def rotate_key(call: Call) -> Any:
    gen = call.general
    key_id = gen.rotate("operator " + call.caller.name)
    await gen.store.audit(call.caller.name, "key.rotate", "*", True, {"key_id": key_id})
    return {"key_id": key_id, "scouts": len(gen.hub.online)}


def _changer(action: str):  # type: ignore[no-untyped-def]
    async def change_keys(call: Call) -> Any:
        body: KeyChange = call.body
        gen = call.general
        names = gen.keys.names_for_all(action) if body.all else body.hosts
        if not names and not body.all:
            raise ApiError(422, "hosts: name at least one host, or set all")
        changed, errors = await gen.keys.change(action, names, call.caller.name)
        return {"changed": changed, "errors": errors}

    change_keys.__name__ = f"{action}_keys"
    return change_keys


async def list_hosts(call: Call) -> Any:
    gen = call.general
    out = []
    for row in sorted(gen.keys.hosts.values(), key=lambda r: r.hostname):
        out.append(
            {
                "hostname": row.hostname,
                "state": row.state,
                "online": gen.jobs.is_online(row.hostname),
                "general": gen.connected_to(row.hostname),
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


ENDPOINTS = [
    Endpoint("GET", "/api/v1/keys", list_keys, "Host names by key state", "keys"),
    Endpoint(
        "POST",
        "/api/v1/keys/rotate",
        rotate_key,
        "Rotate the session key; connected scouts are re-keyed",
        "keys",
        role="admin",
    ),
    *[
        Endpoint(
            "POST",
            f"/api/v1/keys/{action}",
            _changer(action),
            f"{action.capitalize()} host keys",
            "keys",
            role="admin",
            body=KeyChange,
        )
        for action in ACTIONS
    ],
    Endpoint("GET", "/api/v1/hosts", list_hosts, "Every known host with its facts and whether it is online", "hosts"),
]
