"""The import graph points down, as DESIGN.md draws it; the scout stays small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "troop"
SHARED = {
    "troop",
    "troop.errors",
    "troop.settings",
    "troop.backoff",
    "troop.logs",
    "troop.blacklist",
    "troop.daemon",
    "troop.durable",
}

# package -> troop packages it may import (besides itself and the shared modules)
ALLOWED = {
    "protocol": set(),
    "store": set(),
    "bus": set(),
    "scout": {"protocol"},
    "filemanager": {"store", "bus", "protocol"},
    "general": {"store", "bus", "protocol", "filemanager"},
    "cli": set(),
}


def troop_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("troop")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("troop"):
            found.add(node.module)
    return found


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    bad = []
    for path in (SRC / package).rglob("*.py"):
        for module in troop_imports(path):
            if module in SHARED:
                continue
            target = package_of(module)
            if target != package and target not in ALLOWED[package]:
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert not bad, "\n".join(bad)


def test_protocol_is_pure() -> None:
    for path in (SRC / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"asyncio", "socket", "selectors", "pathlib"}, f"{path.name} does I/O: {names}"


def test_scout_process_loads_no_server_libraries() -> None:
    code = (
        "import sys, troop.scout.main, troop.scout.agent\n"
        "heavy = [m for m in ('fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'uvicorn', 'alembic', 'ssl',"
        " 'hashlib', 'troop.general', 'troop.store') if sys.modules.get(m) is not None]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the scout imports {out}"


def test_file_and_plugin_tasks_load_no_http_or_email_package() -> None:
    # The scout loads these on its first push or plugin install, and keeps them for good.
    code = (
        "import sys, troop.scout.main, troop.scout.files, troop.scout.files_push, troop.scout.httpget,"
        " troop.scout.plugins, troop.scout.lifecycle\n"
        "print(','.join(m for m in ('http.client', 'email', 'ssl', 'hashlib') if sys.modules.get(m) is not None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"file and plugin tasks import {out}"
