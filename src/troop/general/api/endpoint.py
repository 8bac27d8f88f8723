"""A small, typed route table on Starlette: auth by role, a pydantic body, bounded query
parameters, errors as {"error": ...}. The same table feeds the OpenAPI document.

Starlette instead of FastAPI: FastAPI (with the OpenTelemetry it now imports) adds about
10 MB of resident memory to the General for what this file does in ~150 lines.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from troop.general.auth import AuthError, Caller, role_at_least

if TYPE_CHECKING:
    from troop.general.server import General

log = logging.getLogger("troop.general.api")
MAX_BODY = 1024 * 1024  # JSON bodies; files travel through the FileManager, not here


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class QueryParam:
    name: str
    kind: type[int] | type[float]
    doc: str
    default: float | None = None
    minimum: float = 0
    maximum: float = float("inf")

    def parse(self, raw: str | None) -> float | None:
        if raw is None or raw == "":
            return self.default
        try:
            value = self.kind(raw)
        except ValueError:
            raise ApiError(422, f"{self.name}: must be a number") from None
        if not self.minimum <= value <= self.maximum or value != value:
            raise ApiError(422, f"{self.name}: must be between {self.minimum:g} and {self.maximum:g}")
        return value


@dataclass
class Call:
    """What a handler gets: the request, who called, the parsed body and parameters."""

    request: Request
    general: General
    caller: Caller
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    role: str | None = "viewer"  # None: no token needed
    body: type[BaseModel] | None = None
    query: tuple[QueryParam, ...] = ()
    status: int = 200
    ndjson: bool = False

    def route(self) -> Route:
        async def endpoint(request: Request) -> Response:
            general: General = request.app.state.general
            caller = await _authorize(general, request, self.role)
            call = Call(request=request, general=general, caller=caller)
            call.query = {q.name: q.parse(request.query_params.get(q.name)) for q in self.query}
            if self.body is not None:
                call.body = await _parse_body(request, self.body)
            result = await self.handler(call)
            return result if isinstance(result, Response) else JSONResponse(result, status_code=self.status)

        return Route(self.path, endpoint, methods=[self.method], name=self.handler.__name__)


async def _authorize(general: General, request: Request, role: str | None) -> Caller:
    if role is None:
        return Caller(token_id="", name="anonymous", role="viewer", targets=None)
    try:
        caller = await general.tokens.check(request.headers.get("authorization"))
    except AuthError as exc:
        # A known token that no longer works is audited; unknown ones are not, so that
        # anonymous callers cannot flood the audit table.
        if exc.token_name is not None:
            await general.store.audit(
                exc.token_name, f"denied {request.method} {request.url.path}", "", False, {"error": str(exc)}
            )
        raise
    if not role_at_least(caller.role, role):
        await general.store.audit(
            caller.name, f"denied {request.method} {request.url.path}", "", False, {"role": caller.role, "needs": role}
        )
        raise AuthError(403, f"the {caller.role} role may not do this (needs {role})")
    return caller


async def _parse_body(request: Request, model: type[BaseModel]) -> BaseModel:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise ApiError(413, f"request body of {length} bytes is over the {MAX_BODY}-byte limit")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"request body is over the {MAX_BODY}-byte limit")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise ApiError(422, describe_validation(exc)) from None


def describe_validation(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(problems)
