"""/api/v1/plugins, and the arguments of plugin.* and scout.* jobs."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from troop.general.api.endpoint import ApiError, Call, Endpoint
from troop.general.jobs import JobRequest

if TYPE_CHECKING:
    from troop.general.server import General

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
WHEELS_KEY = "wheels"  # general_state: {version: {"sha256", "wheel"}} of uploaded Troop wheels
WHEEL_NAME = re.compile(r"^troopstack-(?P<version>[0-9][A-Za-z0-9.+!]*)-[^/\\]+\.whl$")


class PluginIn(BaseModel):
    name: str | None = Field(None, max_length=128, pattern=NAME)
    version: str | None = Field(None, max_length=64, pattern=r"^v?[0-9]+(\.[0-9]+)*$")
    force: bool = Field(False, description="plugin.update: reinstall even when the version is there.")
    action: str | None = Field(None, max_length=256, description="plugin.run: the plugin's first argument.")
    args: list[str] = Field(default_factory=list, max_length=1024, description="plugin.run: more arguments.")


class UpgradeIn(BaseModel):
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="An uploaded troopstack wheel.")
    wheel: str | None = Field(None, max_length=255, description="Its file name (troopstack-VERSION-...whl).")
    version: str | None = Field(None, max_length=64, description="Or: the version of a wheel uploaded before.")


async def plugin_job(gen: General, body: Any, req: JobRequest) -> None:
    """Fill `req` for plugin.update, plugin.versions, plugin.run and scout.* jobs (422 if malformed)."""
    p: PluginIn = body.plugin or PluginIn.model_validate({})
    if body.kind == "plugin.update":
        if p.name and not any(e.name == p.name for e in gen.plugins.entries):
            raise ApiError(422, f"plugin.name: no plugin {p.name!r} in the index (troop plugin list)")
        wants = [f"{p.name}:{p.version.lstrip('v')}" if p.version else p.name] if p.name else None
        gen.plugin_sync.request(req, wants, p.force)
    elif body.kind == "plugin.versions":
        req.args = {"name": _required(p.name, "plugin.name")}
    elif body.kind == "plugin.run":
        name, action = _required(p.name, "plugin.name"), _required(p.action, "plugin.action")
        req.args = {"name": name, "action": action, "args": list(p.args)}
        req.argv = [name, action, *p.args]
    elif body.kind == "scout.upgrade":
        await _upgrade(gen, body.upgrade or UpgradeIn.model_validate({}), req)


def _required(value: str | None, field: str) -> str:
    if not value:
        raise ApiError(422, f"{field}: required for this kind of job")
    return value


async def _upgrade(gen: General, u: UpgradeIn, req: JobRequest) -> None:
    if u.version:
        wheels = await _wheels(gen)
        found = wheels.get(u.version.lstrip("v"))
        if found is None:
            raise ApiError(422, f"upgrade.version: no wheel of version {u.version} was uploaded (--to FILE.whl)")
        sha, name = found["sha256"], found["wheel"]
    elif u.sha256 and u.wheel:
        sha, name = u.sha256, u.wheel
    else:
        raise ApiError(422, "upgrade: give sha256 and wheel, or version")
    if not WHEEL_NAME.match(name):
        raise ApiError(422, "upgrade.wheel: not a troopstack wheel file name")
    size = await gen.files.size_of(sha)
    if size is None:
        raise ApiError(422, "upgrade.sha256: no such upload on the FileManager")
    hub, files = gen.hub, gen.files
    req.args = {"wheel": name, "sha256": sha, "size": size}
    req.host_args = lambda host: files.download(sha, host, hub.local_address(host))
    req.blobs = [sha]


async def remember_wheel(gen: General, name: str, sha: str) -> None:
    """Uploads named like a troopstack wheel can later be named by version alone."""
    match = WHEEL_NAME.match(name)
    if match:
        wheels = await _wheels(gen)
        wheels[match["version"]] = {"sha256": sha, "wheel": name}
        await gen.store.set_state(WHEELS_KEY, json.dumps(wheels).encode())


async def _wheels(gen: General) -> dict[str, dict[str, str]]:
    raw = await gen.store.get_state(WHEELS_KEY)
    return dict(json.loads(raw)) if raw else {}


async def list_plugins(call: Call) -> Any:
    return call.general.plugins.to_json()


async def pull_plugins(call: Call) -> Any:
    from troop.general.plugins import PluginError

    gen = call.general
    try:
        await gen.plugins.pull()
    except PluginError as exc:
        await gen.store.audit(call.caller.name, "plugin.pull", gen.settings.plugin_repo, False, {"error": str(exc)})
        raise ApiError(502, str(exc)) from exc
    await gen.store.audit(call.caller.name, "plugin.pull", gen.settings.plugin_repo, True,
                          {"plugins": len(gen.plugins.entries)})
    await gen.plugin_sync.sync(list(gen.hub.online))
    return gen.plugins.to_json()


ENDPOINTS = [
    Endpoint("GET", "/api/v1/plugins", list_plugins, "The plugin index", "plugins"),
    Endpoint("POST", "/api/v1/plugins/pull", pull_plugins,
             "Fetch the plugin repository, index it, and sync connected scouts", "plugins", role="admin"),
]
