"""The OpenAPI 3.1 document, built from the same route table that serves the requests."""

from __future__ import annotations

import re
from typing import Any

from troop import __version__
from troop.general.api.endpoint import Endpoint

ROLES_TEXT = "Roles: viewer reads; operator also runs jobs; admin also manages keys and tokens."


def build(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "tags": [ep.tag],
            "operationId": ep.handler.__name__,
            "parameters": _parameters(ep),
            "responses": _responses(ep),
        }
        if ep.role is not None:
            op["security"] = [{"bearer": []}]
            op["description"] = f"Needs the {ep.role} role or higher."
        if ep.body is not None:
            schema = ep.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[ep.body.__name__] = schema
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}},
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Troop General API", "version": __version__, "description": ROLES_TEXT},
        "paths": paths,
        "components": {
            "schemas": {**schemas, "Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", ep.path)
    ]
    for q in ep.query:
        schema: dict[str, Any] = {"type": "integer" if q.kind is int else "number", "minimum": q.minimum}
        if q.maximum != float("inf"):
            schema["maximum"] = q.maximum
        if q.default is not None:
            schema["default"] = q.default
        params.append({"name": q.name, "in": "query", "required": False, "description": q.doc, "schema": schema})
    return params


def _responses(ep: Endpoint) -> dict[str, Any]:
    media = "application/x-ndjson" if ep.ndjson else "application/json"
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out: dict[str, Any] = {str(ep.status): {"description": "OK", "content": {media: {}}}}
    if ep.role is not None:
        out["401"] = {"description": "missing, invalid, revoked or expired token", **err}
        out["403"] = {"description": "the token's role may not do this", **err}
    if ep.body is not None or ep.query:
        out["422"] = {"description": "a field is invalid; the message names it", **err}
    return out
