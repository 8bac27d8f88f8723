"""The General's HTTP API: FastAPI app, error shapes, OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from troop import __version__
from troop.general.api import jobs, keys, tokens
from troop.general.auth import AuthError

if TYPE_CHECKING:
    from troop.general.server import General

log = logging.getLogger("troop.general.api")


def create_app(general: General) -> FastAPI:
    app = FastAPI(
        title="Troop General API",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        description="Run commands on many hosts. Every route needs `Authorization: Bearer TOKEN`.",
    )
    app.state.general = general
    app.include_router(jobs.router)
    app.include_router(keys.router)
    app.include_router(tokens.router)

    @app.get("/api/v1/health", tags=["health"], summary="Liveness (no token needed)")
    async def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "scouts": len(general.hub.online)}

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(problems), "detail": jsonable_encoder(exc.errors())}, status_code=422)

    return app
