"""`troop-general`: the server. Flags over TROOP_* variables over the TOML file over defaults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from troop import __version__, logs
from troop.errors import ConfigError
from troop.settings import load

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
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        settings = load(GeneralSettings, args.config, overrides)
    except ConfigError as exc:
        print(f"troop-general: {exc}", file=sys.stderr)
        sys.exit(2)
    # Keys, tokens and job output live in the data dir: nothing the General writes is for others.
    os.umask(0o077)
    logs.setup(settings.log_level, settings.log_file)
    _use_uvloop()
    try:
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        pass
    except (ConfigError, OSError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


async def _serve(settings: object) -> None:
    from troop.general.server import General

    general = General(settings)  # type: ignore[arg-type]
    await general.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await general.stop()


def _use_uvloop() -> None:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
