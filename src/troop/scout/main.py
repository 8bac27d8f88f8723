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
import signal  # noqa: E402
import socket  # noqa: E402

from troop import __version__, logs  # noqa: E402
from troop.errors import ConfigError  # noqa: E402
from troop.settings import load  # noqa: E402

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
    from troop.protocol.handshake import valid_hostname
    from troop.scout.settings import ScoutSettings

    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    if args.general:
        overrides["general"] = args.general
    try:
        settings = load(ScoutSettings, args.config, overrides)
        settings.hostname = settings.hostname or socket.gethostname()
        if not valid_hostname(settings.hostname):
            raise ConfigError(f"hostname {settings.hostname!r} is not valid (letters, digits, '-', '.', '_')")
        if not settings.general:
            raise ConfigError("no General address given (--general HOST:PORT)")
    except ConfigError as exc:
        print(f"troop-scout: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.setup(settings.log_level, settings.log_file)
    try:
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        pass


async def _serve(settings: object) -> None:
    from troop import blacklist
    from troop.scout.agent import Agent
    from troop.scout.identity import load_or_create_keypair
    from troop.scout.settings import ScoutSettings

    assert isinstance(settings, ScoutSettings)
    keypair = load_or_create_keypair(settings.data_dir, settings.key_bits)
    local = blacklist.load_blacklist(settings.blacklist_file) if settings.blacklist_file else []
    agent = Agent(settings, keypair, local)
    log.info("scout %s starting (key %s)", settings.hostname, keypair.public.fingerprint)
    task = asyncio.create_task(agent.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C arrives as KeyboardInterrupt instead
            pass
    await stop.wait()
    task.cancel()


if __name__ == "__main__":
    main()
