"""`troop-scout`: the agent. It dials out to its Generals and opens no port."""

from __future__ import annotations

import sys

# The scout speaks its own sealed protocol, never TLS. asyncio imports `ssl` only if it can,
# and keeping it (with a second copy of OpenSSL beside cryptography's) out of the process
# saves about 4 MB of resident memory on every host.
sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from troop import __version__  # noqa: E402
from troop.daemon import run, settings_or_exit, until_stopped  # noqa: E402
from troop.errors import ConfigError  # noqa: E402

if TYPE_CHECKING:
    from troop.scout.settings import ScoutSettings

log = logging.getLogger("troop.scout")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="troop-scout", description="Troop's agent: runs what its General sends.")
    p.add_argument("--general", metavar="HOST:PORT[,HOST:PORT...]", help="General address(es)")
    p.add_argument("--data-dir", help="directory for the scout's key and the pinned General key")
    p.add_argument("--hostname", help="name to answer to (default: the OS hostname)")
    p.add_argument("--tag", action="append", dest="tags", metavar="TAG", help="a tag (repeatable)")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--log-level", help="debug, info, warning, error")
    p.add_argument("--version", action="version", version=f"troop-scout {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from troop.scout.settings import ScoutSettings

    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_exit("troop-scout", ScoutSettings, args, _check)
    run(_serve(settings), settings.log_level, settings.log_file)


def _check(settings: ScoutSettings) -> None:
    from troop.protocol.handshake import valid_hostname

    settings.hostname = settings.hostname or socket.gethostname()
    if not valid_hostname(settings.hostname):
        raise ConfigError(f"hostname {settings.hostname!r} is not valid (letters, digits, '-', '.', '_')")
    if not settings.general:
        raise ConfigError("no General address given (--general HOST:PORT)")


async def _serve(settings: ScoutSettings) -> None:
    from troop import blacklist
    from troop.scout.agent import Agent
    from troop.scout.identity import load_or_create_keypair

    keypair = load_or_create_keypair(settings.data_dir, settings.key_bits)
    local = blacklist.load_blacklist(settings.blacklist_file) if settings.blacklist_file else []
    agent = Agent(settings, keypair, local)
    log.info("scout %s starting (key %s)", settings.hostname, keypair.public.fingerprint)
    task = asyncio.create_task(agent.run())
    await until_stopped()
    task.cancel()


if __name__ == "__main__":
    main()
