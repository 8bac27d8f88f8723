"""`troop-filemanager`: the FileManager on its own, for scale-out. Flags over TROOP_* variables
over the TOML file over defaults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
from pathlib import Path

from troop import __version__, logs
from troop.daemon import run, settings_or_exit, until_stopped
from troop.errors import ConfigError
from troop.filemanager.settings import FileManagerSettings

log = logging.getLogger("troop.filemanager")
SWEEP_INTERVAL = 3600.0  # seconds between sweeps of abandoned uploads
SWEEP_AGE = 3600.0  # a temp file untouched this long belongs to an upload that died


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="troop-filemanager", description="Troop's FileManager: files by sha256.")
    p.add_argument("--data-dir", help="directory for blobs, the secret and the service token")
    p.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default 0.0.0.0:6859)")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--log-level", help="debug, info, warning, error")
    p.add_argument("--version", action="version", version=f"troop-filemanager {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_exit("troop-filemanager", FileManagerSettings, args)
    run(_run(settings), settings.log_level, settings.log_file, uvloop=True)


async def _run(settings: FileManagerSettings) -> None:
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop))
    await until_stopped()
    stop.set()
    await server


async def serve(settings: FileManagerSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then let in-flight requests finish (briefly) and return."""
    from troop.filemanager.app import create_app
    from troop.filemanager.blobstore import BlobStore, sweep_forever
    from troop.filemanager.httpserve import HttpServer
    from troop.filemanager.signing import load_or_create_secret

    store = BlobStore(settings.data_dir / "files", settings.max_upload)
    secret = load_or_create_secret(settings.secret_path)
    token = load_or_create_token(settings.service_token_path)
    server = HttpServer(create_app(store, secret, token), settings.listen, 6859)
    await server.start()
    host, port = server.address
    logs.event(log, logging.INFO, "filemanager ready", address=f"{host}:{port}", data_dir=settings.data_dir)
    sweeper = asyncio.create_task(sweep_forever(store, SWEEP_INTERVAL, SWEEP_AGE))
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await server.stop()


def load_or_create_token(path: Path) -> str:
    """The service token in `path`, made (random, mode 0600) if the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"{path}: a service token needs at least 16 characters")
    return token


def _use_uvloop() -> None:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
