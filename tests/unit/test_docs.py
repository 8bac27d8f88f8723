"""The docs stay true to the code: settings tables and API routes are checked against it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "gen_config_doc.py"
    spec = importlib.util.spec_from_file_location("gen_config_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_configuration_tables_match_the_code() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert _generator().update(text) == text, (
        "docs/configuration.md is out of date: run .venv/bin/python scripts/gen_config_doc.py --write"
    )


def test_every_setting_is_in_the_tables() -> None:
    gen = _generator()
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for cls in gen.COMPONENTS.values():
        for name, _default, doc in gen.describe(cls):
            assert doc, f"{cls.__name__}.{name} has no documentation"
            assert f"`TROOP_{name.upper()}`" in text


def test_toml_values() -> None:
    gen = _generator()
    assert gen.toml_value("PosixPath('/var/lib/troop-general')") == '"/var/lib/troop-general"'
    assert gen.toml_value("['127.0.0.1:6954']") == '["127.0.0.1:6954"]'
    assert gen.toml_value("False") == "false"
    assert gen.toml_value("''") == '""'
    assert gen.toml_value("8388608") == "8388608"


async def _get(app: Any, path: str) -> Any:
    """One GET straight through the ASGI app: no server, no socket."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 6858),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent[0]
    return json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def _api_routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every route in the OpenAPI document the General serves."""
    from troop.general.api.app import create_app

    schema = asyncio.run(_get(create_app(None), "/api/v1/openapi.json"))  # needs no running General
    return [
        (method.upper(), path)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in methods
    ]


def test_every_api_route_is_documented() -> None:
    routes = _api_routes()
    assert ("POST", "/api/v1/jobs") in routes  # the app really was built
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [f"{m} {p}" for m, p in routes if f"`{m} {p}`" not in text]
    assert not missing, f"routes missing from docs/api.md: {missing}"
