"""Generate the settings tables of docs/configuration.md from the settings dataclasses.

    .venv/bin/python scripts/gen_config_doc.py           print both tables
    .venv/bin/python scripts/gen_config_doc.py --write   rewrite them in docs/configuration.md
    .venv/bin/python scripts/gen_config_doc.py --check   exit 1 if docs/configuration.md is stale

Each table sits between `<!-- settings:NAME -->` and `<!-- /settings:NAME -->`.
tests/unit/test_docs.py runs the same code and fails when the page and the code differ.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Any

from troop.filemanager.settings import FileManagerSettings
from troop.general.settings import GeneralSettings
from troop.scout.settings import ScoutSettings
from troop.settings import describe

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
ENV_PREFIX = "TROOP_"
COMPONENTS: dict[str, type[Any]] = {
    "general": GeneralSettings,
    "scout": ScoutSettings,
    "filemanager": FileManagerSettings,
}
_PATH_REPR = re.compile(r"^\w*Path\((.*)\)$")


def toml_value(default_repr: str) -> str:
    """describe()'s repr of a default, written as it would be in a TOML file."""
    match = _PATH_REPR.match(default_repr)
    text = match.group(1) if match else default_repr
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return default_repr
    return _toml(value)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(cls: type[Any]) -> str:
    """One Markdown table: key, environment variable, default, meaning."""
    lines = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for name, default, doc in describe(cls):
        env = ENV_PREFIX + name.upper()
        lines.append(f"| `{name}` | `{env}` | `{_cell(toml_value(default))}` | {_cell(doc)} |")
    return "\n".join(lines)


def update(text: str) -> str:
    """`text` with every component's table replaced by the one the code gives now."""
    for name, cls in COMPONENTS.items():
        start, end = f"<!-- settings:{name} -->", f"<!-- /settings:{name} -->"
        if start not in text or end not in text:
            raise ValueError(f"docs/configuration.md lacks the markers {start} ... {end}")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{table(cls)}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in docs/configuration.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        for name, cls in COMPONENTS.items():
            print(f"<!-- settings:{name} -->\n{table(cls)}\n<!-- /settings:{name} -->\n")
        return 0
    current = DOC.read_text(encoding="utf-8")
    wanted = update(current)
    if args.check:
        if wanted != current:
            print(f"{DOC} is out of date: run scripts/gen_config_doc.py --write", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
