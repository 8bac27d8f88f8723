"""Authentication and roles for every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from troop.general.auth import AuthError, Caller, role_at_least

if TYPE_CHECKING:
    from troop.general.server import General


def general(request: Request) -> General:
    return request.app.state.general  # type: ignore[no-any-return]


def require(role: str) -> Callable[[Request], Awaitable[Caller]]:
    async def dependency(request: Request) -> Caller:
        gen = general(request)
        caller = await gen.tokens.check(request.headers.get("authorization"))
        if not role_at_least(caller.role, role):
            await gen.store.audit(
                caller.name,
                f"denied {request.method} {request.url.path}",
                "",
                False,
                {"role": caller.role, "needs": role},
            )
            raise AuthError(403, f"the {caller.role} role may not do this (needs {role})")
        return caller

    return dependency


viewer = require("viewer")
operator = require("operator")
admin = require("admin")

ViewerCaller = Annotated[Caller, Depends(viewer)]
OperatorCaller = Annotated[Caller, Depends(operator)]
AdminCaller = Annotated[Caller, Depends(admin)]
