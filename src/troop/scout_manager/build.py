"""Build the ``scout_manager`` plugin: a Python zipapp, ``scout_manager-linux-vVERSION``.

``python -m troop.scout_manager.build OUT_DIR [--version X.Y.Z]`` writes
``OUT_DIR/scout_manager/scout_manager-linux-vX.Y.Z`` (the layout of a plugin repository:
one folder per plugin) and prints its path. The archive holds the ``scout_manager`` package
(``__init__.py`` with the version baked in, and ``__main__.py``) plus a top-level
``__main__.py`` that runs it. This file is not part of it.

Same sources and version, same bytes: entries are written in a fixed order with a fixed
timestamp and mode, so a rebuild has the sha256 the General already indexed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile
from pathlib import Path

import troop

SHEBANG = b"#!/usr/bin/env python3\n"
PACKAGE = "scout_manager"
SOURCES = ("__init__.py", "__main__.py")  # STDLIB-only modules; build.py stays behind
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
_VERSION_LINE = re.compile(r'^VERSION = "[^"\n]*"$', re.MULTILINE)
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
_STUB = f"import sys\n\nfrom {PACKAGE}.__main__ import main\n\nsys.exit(main())\n"


def bake_version(init_source: str, version: str) -> str:
    """``__init__.py`` with its ``VERSION = "..."`` line set to ``version``."""
    baked, count = _VERSION_LINE.subn(f'VERSION = "{version}"', init_source)
    if count != 1:
        raise ValueError(f"expected one VERSION line in {PACKAGE}/__init__.py, found {count}")
    return baked


def archive_members(version: str) -> dict[str, str]:
    """Archive path -> text of every file in the zipapp."""
    here = Path(__file__).resolve().parent
    members = {"__main__.py": _STUB}
    for name in SOURCES:
        members[f"{PACKAGE}/{name}"] = (here / name).read_text(encoding="utf-8")
    members[f"{PACKAGE}/__init__.py"] = bake_version(members[f"{PACKAGE}/__init__.py"], version)
    return members


def build_zipapp(out_dir: Path, version: str | None = None) -> Path:
    """Write the zipapp under ``out_dir/scout_manager/`` (mode 0755) and return its path."""
    version = troop.__version__ if version is None else version.removeprefix("v")
    if not _VERSION.fullmatch(version):
        raise ValueError(f"not a plugin version (digits and dots): {version!r}")
    target = out_dir / PACKAGE / f"{PACKAGE}-linux-v{version}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(SHEBANG)  # zipimport finds the archive from its end, past this line
            with zipfile.ZipFile(f, "w") as archive:
                for name, text in sorted(archive_members(version).items()):
                    info = zipfile.ZipInfo(name, ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, text.encode("utf-8"))
        os.chmod(tmp, 0o755)  # noqa: S103 - an executable plugin, readable by all as any program
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m troop.scout_manager.build", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, help="plugin directory; the file goes to OUT_DIR/scout_manager/")
    parser.add_argument("--version", help=f"version to build as (default: troop's, {troop.__version__})")
    args = parser.parse_args(argv)
    try:
        path = build_zipapp(args.out_dir, args.version)
    except (OSError, ValueError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
