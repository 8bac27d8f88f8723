"""The General: wires the store, keys, scout hub, jobs and API together, and runs them."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from troop import blacklist as blacklist_mod
from troop.errors import ConfigError
from troop.filemanager.blobstore import BlobStore, sweep_forever
from troop.filemanager.httpserve import HttpServer
from troop.filemanager.remote import RemoteBlobStore
from troop.filemanager.signing import load_or_create_secret
from troop.general.auth import TokenService
from troop.general.files import FileService
from troop.general.hub import ScoutHub
from troop.general.identity import SessionKeys, load_or_create_keypair
from troop.general.jobs import JobManager
from troop.general.keys import KeyRegistry
from troop.general.settings import GeneralSettings
from troop.protocol.crypto import KeyPair
from troop.settings import parse_hostport

if TYPE_CHECKING:
    from troop.general.cluster import Cluster
    from troop.general.plugin_sync import PluginSync
    from troop.general.plugins import PluginIndex
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
        self.files_address: tuple[str, int] = ("", 0)
        self.files: FileService
        self.plugins: PluginIndex
        self.plugin_sync: PluginSync
        self._servers: list[HttpServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._rotate_task: asyncio.Task[None] | None = None
        self.cluster: Cluster | None = None

    @property
    def clustered(self) -> bool:
        return self.settings.bus.strip().startswith(("nats://", "tls://"))

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if self.clustered and s.filemanager_listen:
            raise ConfigError(
                "with a nats:// bus every General must use one standalone troop-filemanager: "
                'set filemanager_listen to "" and filemanager_url, filemanager_token_file'
            )
        identity = load_or_create_keypair(s.data_dir / "general.key", s.key_bits)
        await migrate_in_child(s.store_url)
        self.store = await Store.open(s.store_url, migrate=False)
        if self.clustered:
            # One key for the whole cluster, so a scout's pin holds whichever General it reaches.
            identity = KeyPair.from_pem(await self.store.state_once("general_key", identity.to_pem()))
        self.keys = KeyRegistry(self.store, s.auto_accept)
        await self.keys.load()
        self.hub = ScoutHub(s, identity, SessionKeys(), self.keys, load_blacklist(s.blacklist_path))
        self.jobs = JobManager(s, self.store, self.hub, self.keys)
        self.tokens = TokenService(self.store)
        if self.clustered:
            await self._make_cluster()
            assert self.cluster is not None
            self.tokens.on_revoke = self.cluster.tokens_revoked
            self.cluster.on_tokens = self.tokens.forget
            await self.cluster.start()
        await self.jobs.start()
        await self._start_files()
        await self._start_plugins()
        token_file = await self.tokens.ensure_admin(s.data_dir)
        if token_file is not None:
            log.info("first start: wrote an admin token", extra={"fields": {"file": str(token_file)}})
        host, port = parse_hostport(s.scout_listen, 6954)
        self.scout_address = await self.hub.start(host, port)
        await self._start_api()
        if self.cluster is not None:
            api = f"{self.api_address[0]}:{self.api_address[1]}"
            await self.cluster.announce(api, f"{self.scout_address[0]}:{self.scout_address[1]}")
        if s.rotate_interval > 0:
            self._rotate_task = asyncio.create_task(self._rotate_loop())
        log.info(
            "general ready",
            extra={
                "fields": {
                    "api": f"{self.api_address[0]}:{self.api_address[1]}",
                    "scouts": f"{self.scout_address[0]}:{self.scout_address[1]}",
                    "files": self.files.public_url or f"{self.files_address[0]}:{self.files_address[1]}",
                    "fingerprint": identity.public.fingerprint,
                    "general": self.cluster.gid if self.cluster is not None else "",
                    "store": _redact(s.store_url),
                }
            },
        )

    async def _make_cluster(self) -> None:
        from troop.bus import open_bus
        from troop.bus.sealed import SealedBus
        from troop.general.cluster import Cluster, new_gid

        gid = new_gid()
        bus_key = await self.store.state_once("bus_key", os.urandom(32))
        bus = SealedBus(open_bus(self.settings.bus, name=f"troop-general-{gid}"), bus_key)
        self.cluster = Cluster(self.store, bus, self.hub, self.keys, self.jobs, gid)

    def connected_to(self, host: str) -> str | None:
        """Id of the General the scout is connected to (cluster mode); None when offline or alone."""
        if self.cluster is None:
            return None
        return self.cluster.gid if self.hub.is_online(host) else self.cluster.holder(host)

    def rotate(self, why: str) -> int:
        """A new session key here and, in a cluster, on every General."""
        return self.cluster.rotate(why) if self.cluster is not None else self.hub.rotate(why)

    async def _start_files(self) -> None:
        s = self.settings
        secret = load_or_create_secret(s.filemanager_secret_path)
        blobs: BlobStore | RemoteBlobStore
        fm_port = 0
        if s.filemanager_listen:
            from troop.filemanager.app import create_app as create_fm_app

            local = BlobStore(s.data_dir / "files", s.max_upload)
            fm = HttpServer(create_fm_app(local, secret, None), s.filemanager_listen, 6859)
            await fm.start()
            self._servers.append(fm)
            self.files_address = fm.address
            fm_port = fm.address[1]
            self._tasks.append(asyncio.create_task(sweep_forever(local)))  # abandoned partial uploads
            blobs = local
        elif s.filemanager_url and s.filemanager_token_file:
            if not s.filemanager_secret_path.exists():
                # A new secret made here would sign URLs the FileManager refuses: fail now, clearly.
                raise ConfigError(
                    f"filemanager_secret_file {s.filemanager_secret_path} does not exist: with a standalone "
                    "troop-filemanager, point it at a copy of the FileManager's secret (its DATA_DIR/filemanager.key)"
                )
            token = Path(s.filemanager_token_file).read_text().strip()  # noqa: ASYNC240 - once, at start
            blobs = RemoteBlobStore(s.filemanager_url, token, s.max_upload)
        else:
            raise ConfigError("with filemanager_listen empty, set filemanager_url and filemanager_token_file")
        self.files = FileService(self.store, blobs, secret, s.filemanager_url, fm_port)
        self.jobs.files = self.files

    async def _start_plugins(self) -> None:
        from troop.general.plugin_sync import PluginSync
        from troop.general.plugins import PluginIndex

        self.plugins = PluginIndex(self.settings, self.store, self.files)
        await self.plugins.load()
        self.plugin_sync = PluginSync(self.plugins, self.keys, self.hub, self.files, self.jobs)
        self.jobs.keep_blobs = self.plugins.shas
        self.hub.on_online.append(self.plugin_sync.connected)
        if self.cluster is not None:
            self.plugins.on_pulled = self.cluster.plugins_pulled
            self.cluster.on_plugins = self._plugins_changed_elsewhere
        self._tasks.append(asyncio.create_task(self._pull_at_start()))

    async def _pull_at_start(self) -> None:
        """Index the repository (and the built-in scout_manager) without delaying the start."""
        from troop.general.plugins import PluginError

        try:
            await self.plugins.pull()
        except PluginError as exc:
            log.warning("plugin pull at start failed; keeping the stored index", extra={"fields": {"why": str(exc)}})
        await self.plugin_sync.sync(list(self.hub.online))

    async def _plugins_changed_elsewhere(self) -> None:
        await self.plugins.load()
        await self.plugin_sync.sync(list(self.hub.online))

    async def _start_api(self) -> None:
        from troop.general.api.app import create_app

        api = HttpServer(
            create_app(self), self.settings.api_listen, 6858, cert=self.settings.tls_cert, key=self.settings.tls_key
        )
        await api.start()
        self._servers.insert(0, api)
        self.api_address = api.address

    async def _rotate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rotate_interval)
            self.hub.rotate("schedule")  # each General on its own schedule: its key is its own

    async def stop(self) -> None:
        """Stop taking work, let in-flight writes land, close the store."""
        if self._rotate_task is not None:
            self._rotate_task.cancel()
        for task in self._tasks:
            task.cancel()
        for server in self._servers:
            await server.stop()
        if self.cluster is not None:
            self.cluster.detach()
        await self.hub.stop()
        await self.jobs.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if isinstance(self.files.blobs, RemoteBlobStore):
            await self.files.blobs.close()
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
