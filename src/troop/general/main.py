"""`troop-general`: the server. Flags over TROOP_* variables over the TOML file over defaults."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from troop import __version__
from troop.daemon import run, settings_or_exit, until_stopped

if TYPE_CHECKING:
    from troop.general.settings import GeneralSettings

log = logging.getLogger("troop.general")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="troop-general", description="Troop's server: API, scout port, keys, jobs.")
    p.add_argument("--data-dir", help="directory for the key, the admin token and the SQLite store")
    p.add_argument("--api-listen", metavar="HOST:PORT", help="HTTP API address (default 127.0.0.1:6858)")
    p.add_argument("--scout-listen", metavar="HOST:PORT", help="scout port address (default 0.0.0.0:6954)")
    p.add_argument("--auto-accept", action="store_true", default=None, help="accept new scout keys at once")
    p.add_argument("--store", metavar="URL", help="SQLAlchemy URL (default: SQLite in the data dir)")
    p.add_argument("--bus", metavar="URL", help="bus URL between Generals (default: in-process)")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--log-level", help="debug, info, warning, error")
    p.add_argument("--version", action="version", version=f"troop-general {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from troop.general.settings import GeneralSettings

    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_exit("troop-general", GeneralSettings, args)
    # Keys, tokens and job output live in the data dir: nothing the General writes is for others.
    os.umask(0o077)
    run(_serve(settings), settings.log_level, settings.log_file, uvloop=True)


async def _serve(settings: GeneralSettings) -> None:
    from troop.general.server import General

    general = General(settings)
    await general.start()
    await until_stopped()
    log.info("stopping")
    await general.stop()


if __name__ == "__main__":
    main()
