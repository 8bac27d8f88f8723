"""/api/v1/files: upload files (streamed) for file.push jobs; and the file job arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from troop.filemanager.blobstore import ShaMismatch, TooLarge
from troop.filemanager.signing import SHA256_HEX
from troop.general.api.endpoint import ApiError, Call, Endpoint
from troop.general.api.plugins import remember_wheel
from troop.general.jobs import JobRequest

if TYPE_CHECKING:
    from troop.general.server import General


class FileIn(BaseModel):
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="file.push: the uploaded file.")
    name: str | None = Field(None, max_length=255, description="file.push: the source's base name.")
    dest: str | None = Field(None, max_length=4096, description="file.push: where it lands on each host.")
    mode: str | None = Field(None, pattern=r"^[0-7]{3,4}$", description="file.push: octal mode, e.g. 0644.")
    owner: str | None = Field(None, max_length=64)
    group: str | None = Field(None, max_length=64)
    makedirs: bool = False
    backup: bool = Field(False, description="file.push: keep the old file beside the new one.")
    force: bool = Field(False, description="file.push: rewrite even when the content is the same.")
    path: str | None = Field(None, max_length=4096, description="file.read and file.ls: the path on each host.")
    max_bytes: int = Field(1024 * 1024, ge=0, description="file.read: refuse files larger than this.")


async def file_job(gen: General, body: Any, req: JobRequest) -> None:
    """Fill `req` for a file.push, file.read or file.ls job, or raise ApiError(422)."""
    f: FileIn = body.file or FileIn.model_validate({})
    if body.kind == "file.read":
        if not f.path:
            raise ApiError(422, "file.path: required for file.read")
        if f.max_bytes > gen.settings.max_read:
            raise ApiError(422, f"file.max_bytes: at most {gen.settings.max_read} bytes may be read")
        req.args = {"path": f.path, "max_bytes": f.max_bytes}
    elif body.kind == "file.ls":
        req.args = {"path": f.path or ""}
    else:
        await _push(gen, f, req)


async def _push(gen: General, f: FileIn, req: JobRequest) -> None:
    if not f.sha256 or not f.dest:
        raise ApiError(422, "file: sha256 and dest are required for file.push")
    size = await gen.files.size_of(f.sha256)
    if size is None:
        raise ApiError(422, "file.sha256: no such upload on the FileManager; upload it first (PUT /api/v1/files)")
    name = f.name or ""
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ApiError(422, "file.name: must be a plain file name")
    sha = f.sha256
    req.args = {
        "sha256": sha,
        "size": size,
        "dest": f.dest,
        "name": name,
        "mode": int(f.mode, 8) if f.mode else None,
        "owner": f.owner,
        "group": f.group,
        "makedirs": f.makedirs,
        "backup": f.backup,
        "force": f.force,
    }
    hub, files = gen.hub, gen.files
    req.host_args = lambda host: files.download(sha, host, hub.local_address(host))
    req.blobs = [sha]


async def upload_file(call: Call) -> Any:
    gen = call.general
    request = call.request
    limit = gen.settings.max_upload
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"upload of {length} bytes is over the {limit}-byte limit")
    expected = request.headers.get("x-troop-sha256") or None
    if expected is not None and not SHA256_HEX.match(expected):
        raise ApiError(422, "X-Troop-Sha256: not a lowercase hex sha256")
    try:
        info = await gen.files.upload(request.stream(), expected)
    except TooLarge as exc:
        raise ApiError(413, str(exc)) from exc
    except ShaMismatch as exc:
        raise ApiError(422, str(exc)) from exc
    name = unquote(request.headers.get("x-troop-name", ""))[:255]
    await remember_wheel(gen, name, info.sha256)
    await gen.store.audit(call.caller.name, "file.upload", name, True, {"sha256": info.sha256, "size": info.size})
    return JSONResponse({"sha256": info.sha256, "size": info.size}, status_code=201)


async def has_file(call: Call) -> Any:
    size = await call.general.files.size_of(call.path("sha256"))
    return Response(status_code=404 if size is None else 200, headers={"X-Troop-Size": str(size or 0)})


ENDPOINTS = [
    Endpoint(
        "PUT",
        "/api/v1/files",
        upload_file,
        "Upload a file (streamed body) for file.push jobs",
        "files",
        role="operator",
        status=201,
    ),
    Endpoint(
        "HEAD", "/api/v1/files/{sha256}", has_file, "Whether the FileManager has this file", "files", role="operator"
    ),
]
