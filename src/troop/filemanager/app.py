"""The FileManager's HTTP API on Starlette: signed, sealed downloads for scouts; uploads,
existence checks and deletes for services holding the service token.

The same app runs standalone (`troop-filemanager`) and inside the General on its FileManager
port. Errors are {"error": ...}; a refused request is logged in one line, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from troop import __version__, logs
from troop.filemanager import signing
from troop.filemanager.blobstore import BlobStore, ShaMismatch, TooLarge
from troop.protocol.blobstream import blob_key

log = logging.getLogger("troop.filemanager.api")
PREFIX = "/fm/v1"

Handler = Callable[[Request], Awaitable[Response]]


class FmError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(store: BlobStore, secret: bytes, service_token: str | None) -> Starlette:
    """The API over `store`. Without a service token there are no upload, HEAD or DELETE routes:
    the General then writes the store in-process and only downloads go over HTTP."""
    api = _Api(store, secret, service_token)
    blob = PREFIX + "/blobs/{sha:path}"  # :path, so `../x` reaches the sha check (400), not the router
    routes = [
        Route(PREFIX + "/health", _guard(api.health), methods=["GET"]),
        Route(PREFIX + "/openapi.json", _guard(api.openapi), methods=["GET"]),
    ]
    if service_token is not None:
        # Before the GET route: Starlette answers HEAD with any GET route that matches first.
        routes += [
            Route(PREFIX + "/blobs", _guard(api.upload), methods=["PUT"]),
            Route(blob, _guard(api.head), methods=["HEAD"]),
            Route(blob, _guard(api.delete), methods=["DELETE"]),
        ]
    routes.append(Route(blob, _guard(api.download), methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _internal_error})


class _Api:
    def __init__(self, store: BlobStore, secret: bytes, service_token: str | None) -> None:
        self.store = store
        self.secret = secret
        self.token = None if service_token is None else service_token.encode()

    async def download(self, request: Request) -> Response:
        sha = _sha(request)
        try:
            grant = signing.verify(self.secret, sha, dict(request.query_params))
        except ValueError as exc:
            raise FmError(403, str(exc)) from None
        size = self.store.size(sha)
        if size is None:
            raise FmError(404, "no such blob")
        chunks = self.store.sealed_chunks(sha, blob_key(self.secret, bytes.fromhex(grant.nonce), sha))
        try:
            # The first step opens the file: a blob deleted since size() is still a clean 404.
            first = await anext(chunks)
        except FileNotFoundError:
            raise FmError(404, "no such blob") from None
        headers = {"X-Troop-Size": str(size), "Cache-Control": "no-store"}
        return StreamingResponse(_relay(first, chunks, sha), media_type="application/octet-stream", headers=headers)

    async def upload(self, request: Request) -> Response:
        self._authorize(request)
        expected = request.headers.get("x-troop-sha256") or None
        if expected is not None and not signing.SHA256_HEX.match(expected):
            raise FmError(422, "X-Troop-Sha256: not 64 lowercase hex digits")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise FmError(400, "Content-Length: not a number")
            if int(length) > self.store.max_size:
                raise FmError(413, f"upload of {length} bytes is over the {self.store.max_size}-byte limit")
        try:
            info = await self.store.put(request.stream(), expected_sha=expected)
        except TooLarge as exc:
            raise FmError(413, str(exc)) from None
        except ShaMismatch as exc:
            raise FmError(422, str(exc)) from None
        except ClientDisconnect:
            raise FmError(400, "the client hung up before the end of the upload") from None
        logs.event(log, logging.INFO, "blob stored", sha256=info.sha256, size=info.size, created=info.created)
        return JSONResponse({"sha256": info.sha256, "size": info.size, "created": info.created}, status_code=201)

    async def head(self, request: Request) -> Response:
        self._authorize(request)
        size = self.store.size(_sha(request))
        if size is None:
            raise FmError(404, "no such blob")
        return Response(status_code=200, headers={"X-Troop-Size": str(size)})

    async def delete(self, request: Request) -> Response:
        self._authorize(request)
        deleted = await self.store.delete(_sha(request))
        return JSONResponse({"deleted": deleted}, status_code=200 if deleted else 404)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "version": __version__, "blobs": await self.store.count()})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(self.token is not None))

    def _authorize(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if self.token is None or scheme.lower() != "bearer" or not given:
            raise FmError(401, "a service token is required (Authorization: Bearer ...)")
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token):
            raise FmError(401, "bad service token")


def _sha(request: Request) -> str:
    sha = str(request.path_params["sha"])
    if not signing.SHA256_HEX.match(sha):
        raise FmError(400, "not a sha256: the blob name must be 64 lowercase hex digits")
    return sha


async def _relay(first: bytes, rest: AsyncIterator[bytes], sha: str) -> AsyncIterator[bytes]:
    yield first
    try:
        async for chunk in rest:
            yield chunk
    except Exception as exc:
        # Headers are gone, so no error status is possible. Ending the body early is safe: the
        # sealed stream has no last chunk, and the scout's StreamOpener refuses it as cut short.
        logs.event(log, logging.ERROR, "download failed mid-stream", sha256=sha, error=repr(exc))


def _guard(handler: Handler) -> Handler:
    """Errors as JSON and one log line; caught here rather than by an exception handler because
    Starlette re-raises those for 500s, and the server would then log a second time, a traceback."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except FmError as exc:
            _refused(request, exc.status, str(exc))
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            if request.method == "PUT":
                # The body may be unread. Closing is cheaper than keeping the connection and
                # reading (and dropping) up to Content-Length bytes to reach a next request.
                headers["Connection"] = "close"
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)
        except Exception as exc:
            log.error("internal error on %s %s: %r", request.method, request.url.path, exc, exc_info=exc)
            return JSONResponse({"error": "internal error; the FileManager's log has the details"}, status_code=500)

    return endpoint


def _refused(request: Request, status: int, reason: str) -> None:
    client = request.client.host if request.client else ""
    # A miss is routine (HEAD before an upload); everything else is worth a warning.
    level = logging.INFO if status == 404 else logging.WARNING
    logs.event(log, level, "refused", method=request.method, path=request.url.path, status=status, reason=reason,
               client=client)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    _refused(request, exc.status_code, str(exc.detail))
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
    return JSONResponse({"error": "internal error; the FileManager's log has the details"}, status_code=500)


def _op(summary: str, responses: dict[str, str], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "responses": {k: {"description": v} for k, v in responses.items()}}
    out.update(extra)
    return out


_SHA_PARAM = {"name": "sha", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
_QUERY = [{"name": n, "in": "query", "required": True, "schema": {"type": t}, "description": d} for n, t, d in (
    ("exp", "integer", "Unix time the URL expires at."),
    ("host", "string", "The host the URL was granted to."),
    ("nonce", "string", "32 hex digits; also the salt of the stream key."),
    ("sig", "string", "HMAC-SHA256 of the grant, hex."),
)]
_TOKEN: list[dict[str, list[str]]] = [{"serviceToken": []}]


def openapi_document(uploads: bool = True) -> dict[str, Any]:
    """OpenAPI 3.1 of the routes above; without `uploads`, the service-token routes are left out."""
    blob: dict[str, Any] = {"parameters": [_SHA_PARAM], "get": _op(
        "Download a blob as a sealed chunk stream (signed URL; X-Troop-Size gives the plaintext size)",
        {"200": "application/octet-stream: AES-256-GCM chunks", "400": "not a sha256",
         "403": "unsigned, forged or expired URL", "404": "no such blob"}, parameters=_QUERY, security=[])}
    paths: dict[str, Any] = {
        f"{PREFIX}/health": {"get": _op("Liveness and blob count (no token)", {"200": "ok"}, security=[])},
        f"{PREFIX}/openapi.json": {"get": _op("This document", {"200": "OpenAPI 3.1"}, security=[])},
        f"{PREFIX}/blobs/{{sha}}": blob,
    }
    if uploads:
        paths[f"{PREFIX}/blobs"] = {"put": _op(
            "Upload a blob (streamed body); 201 with {sha256, size, created}",
            {"201": "stored", "400": "bad Content-Length", "401": "service token",
             "422": "bad X-Troop-Sha256, or the content does not match it",
             "413": "over max_upload (checked on Content-Length before the body is read)"},
            parameters=[{"name": "X-Troop-Sha256", "in": "header", "required": False,
                         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
            requestBody={"required": True, "content": {"application/octet-stream": {}}})}
        blob["head"] = _op("Whether a blob exists (X-Troop-Size)", {"200": "exists", "404": "missing",
                                                                    "401": "service token"})
        blob["delete"] = _op("Delete a blob; {deleted: bool}", {"200": "deleted", "404": "missing",
                                                                "401": "service token"})
    return {
        "openapi": "3.1.0",
        "info": {"title": "Troop FileManager", "version": __version__},
        "paths": paths,
        "components": {"securitySchemes": {"serviceToken": {"type": "http", "scheme": "bearer"}}},
        "security": _TOKEN,
    }
