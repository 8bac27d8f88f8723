"""What every Troop daemon's entry point does the same way: settings (or exit 2 with the
reason), logs, the event loop, and a stop on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from troop import logs
from troop.errors import ConfigError
from troop.settings import load

T = TypeVar("T")
log = logging.getLogger("troop")


def settings_or_exit(prog: str, cls: type[T], args: argparse.Namespace, check: Callable[[T], None] | None = None) -> T:
    """Flags over TROOP_* variables over the TOML file over defaults; a bad value exits 2."""
    overrides: Mapping[str, Any] = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        settings = load(cls, args.config, overrides)
        if check is not None:
            check(settings)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(2)
    return settings


def run(serve: Coroutine[Any, Any, None], level: str, file: str, *, uvloop: bool = False) -> None:
    """Run a daemon's main coroutine; a start-up failure is one log line and exit 1."""
    logs.setup(level, file)
    if uvloop:
        _use_uvloop()
    try:
        asyncio.run(serve)
    except KeyboardInterrupt:
        pass
    except (ConfigError, OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


async def until_stopped() -> None:
    """Return on SIGTERM or SIGINT (on Windows, Ctrl-C arrives as KeyboardInterrupt instead)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:
            pass
    await stop.wait()


def _use_uvloop() -> None:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


__all__ = ["run", "settings_or_exit", "until_stopped"]
