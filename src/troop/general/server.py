"""The General: wires the store, keys, scout hub, jobs and API together, and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

from troop import blacklist as blacklist_mod
from troop.errors import ConfigError
from troop.general.auth import TokenService
from troop.general.hub import ScoutHub
from troop.general.identity import SessionKeys, load_or_create_keypair
from troop.general.jobs import JobManager
from troop.general.keys import KeyRegistry
from troop.general.settings import GeneralSettings
from troop.settings import parse_hostport
from troop.store import Store

log = logging.getLogger("troop.general")


class General:
    def __init__(self, settings: GeneralSettings) -> None:
        self.settings = settings
        self.store: Store
        self.keys: KeyRegistry
        self.hub: ScoutHub
        self.jobs: JobManager
        self.tokens: TokenService
        self.api_address: tuple[str, int] = ("", 0)
        self.scout_address: tuple[str, int] = ("", 0)
        self._api_server: object | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._rotate_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        identity = load_or_create_keypair(s.data_dir / "general.key", s.key_bits)
        await migrate_in_child(s.store_url)
        self.store = await Store.open(s.store_url, migrate=False)
        self.keys = KeyRegistry(self.store, s.auto_accept)
        await self.keys.load()
        self.hub = ScoutHub(s, identity, SessionKeys(), self.keys, load_blacklist(s.blacklist_path))
        self.jobs = JobManager(s, self.store, self.hub, self.keys)
        self.tokens = TokenService(self.store)
        await self.jobs.start()
        token_file = await self.tokens.ensure_admin(s.data_dir)
        if token_file is not None:
            log.info("first start: wrote an admin token", extra={"fields": {"file": str(token_file)}})
        host, port = parse_hostport(s.scout_listen, 6954)
        self.scout_address = await self.hub.start(host, port)
        await self._start_api()
        if s.rotate_interval > 0:
            self._rotate_task = asyncio.create_task(self._rotate_loop())
        log.info(
            "general ready",
            extra={
                "fields": {
                    "api": f"{self.api_address[0]}:{self.api_address[1]}",
                    "scouts": f"{self.scout_address[0]}:{self.scout_address[1]}",
                    "fingerprint": identity.public.fingerprint,
                    "store": _redact(s.store_url),
                }
            },
        )

    async def _start_api(self) -> None:
        import uvicorn

        from troop.general.api.app import create_app

        host, port = parse_hostport(self.settings.api_listen, 6858)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        self.api_address = sock.getsockname()[:2]
        config = uvicorn.Config(
            create_app(self),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=self.settings.tls_cert or None,
            ssl_keyfile=self.settings.tls_key or None,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # The General owns SIGTERM/SIGINT and stops the API itself, in order.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._api_server = server
        self._api_task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not self._api_task.done():  # noqa: ASYNC110 - uvicorn has no started event
            await asyncio.sleep(0.005)
        if self._api_task.done():
            self._api_task.result()

    async def _rotate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rotate_interval)
            self.hub.rotate("schedule")

    async def stop(self) -> None:
        """Stop taking work, let in-flight writes land, close the store."""
        if self._rotate_task is not None:
            self._rotate_task.cancel()
        if self._api_server is not None:
            self._api_server.should_exit = True  # type: ignore[attr-defined]
        if self._api_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api_task, 3)
        await self.hub.stop()
        await self.jobs.stop()
        await self.store.close()


async def migrate_in_child(url: str) -> None:
    """Bring the store to the newest schema in a child process (see troop.store.migrate)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "troop.store.migrate",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TROOP_STORE_URL": url},
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise ConfigError(f"cannot migrate the store {_redact(url)}: {err.decode(errors='replace').strip()[-500:]}")


def load_blacklist(path: Path) -> list[str]:
    if not path.exists():
        path.write_text(
            "# Commands refused on every scout (advisory: it stops accidents, not attackers).\n"
            "# One per line; see docs/configuration.md.\n" + "\n".join(blacklist_mod.DEFAULT_BLACKLIST) + "\n"
        )
    return blacklist_mod.load_blacklist(path)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return scheme + "://***@" + rest.split("@", 1)[1]
    return url
