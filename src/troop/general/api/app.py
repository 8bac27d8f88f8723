"""The General's HTTP API on Starlette: routes from the endpoint tables, errors as JSON,
OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as StoreTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from troop import __version__
from troop.general.api import files, jobs, keys, openapi, plugins, tokens
from troop.general.api.endpoint import ApiError, Call, Endpoint
from troop.general.auth import AuthError
from troop.store import StoreUnavailable

if TYPE_CHECKING:
    from troop.general.server import General

log = logging.getLogger("troop.general.api")


async def health(call: Call) -> Any:
    gen = call.general
    cluster = gen.cluster
    return {
        "ok": True,
        "version": __version__,
        "scouts": len(gen.hub.online),
        "general": cluster.gid if cluster is not None else None,
    }


async def list_generals(call: Call) -> Any:
    gen = call.general
    if gen.cluster is None:
        return {"generals": []}
    live = gen.cluster.live
    return {
        "generals": [
            {
                "id": row.id,
                "hostname": row.hostname,
                "api": row.api,
                "scouts": row.scouts,
                "online": row.online,
                "started_at": row.started_at.isoformat(),
                "seen_at": row.seen_at.isoformat(),
                "alive": row.id in live,
            }
            for row in await gen.store.all_generals()
        ]
    }


ENDPOINTS: list[Endpoint] = [
    *jobs.ENDPOINTS,
    *keys.ENDPOINTS,
    *tokens.ENDPOINTS,
    *files.ENDPOINTS,
    *plugins.ENDPOINTS,
    Endpoint("GET", "/api/v1/health", health, "Liveness (no token needed)", "health", role=None),
    Endpoint(
        "GET", "/api/v1/generals", list_generals, "The Generals of a cluster (empty for a lone General)", "health"
    ),
]

_DOCS = """<!doctype html><html><head><title>Troop API</title></head><body>
<p>The OpenAPI document is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>;
docs/api.md in the source tree describes every route.</p></body></html>"""


def create_app(general: General | None) -> Starlette:
    spec = openapi.build(ENDPOINTS)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS)

    routes = [ep.route() for ep in ENDPOINTS]
    routes += [Route("/api/v1/openapi.json", openapi_json), Route("/api/v1/docs", docs)]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _error,
            AuthError: _error,
            HTTPException: _http_error,
            DBAPIError: _store_down,
            StoreTimeout: _store_down,
            StoreUnavailable: _store_down,
            Exception: _internal_error,
        },
    )
    app.state.general = general
    return app


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError | AuthError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _store_down(request: Request, exc: Exception) -> Response:
    """The store is unreachable: a clear 503 now, not a hang and not a 500. Recovery needs
    nothing: the pool checks each connection before use."""
    log.error("store unavailable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0][:200])
    return JSONResponse(
        {"error": "the store (database) is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    return JSONResponse({"error": "internal error; the General's log has the details"}, status_code=500)
