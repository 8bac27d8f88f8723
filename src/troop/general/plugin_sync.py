"""Which plugin versions each scout should have, and the plugin.update tasks that get them there.

The General decides (pinned version, else the newest for the scout's OS); the scout only
installs what it is sent, each file verified by sha256. Sync runs when a scout connects and
after every pull; `troop plugin update` runs the same plan on demand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from troop.general.targeting import Target

if TYPE_CHECKING:
    from troop.general.files import FileService
    from troop.general.hub import ScoutHub
    from troop.general.jobs import JobManager, JobRequest
    from troop.general.keys import KeyRegistry
    from troop.general.plugins import PluginEntry, PluginIndex

log = logging.getLogger("troop.general.plugin_sync")
ALWAYS = "scout_manager"
# Scouts connecting within this many seconds share one plugin.update job: a fleet coming
# back after a restart makes a handful of jobs, not one per scout.
BATCH_SECONDS = 0.5


def installed_versions(plugins: list[str]) -> dict[str, str]:
    """A scout's facts list plugins as "name:version"."""
    out = {}
    for item in plugins:
        name, _, version = item.partition(":")
        out[name] = version.lstrip("v")
    return out


class PluginSync:
    def __init__(
        self, index: PluginIndex, keys: KeyRegistry, hub: ScoutHub, files: FileService, jobs: JobManager
    ) -> None:
        self.index, self.keys, self.hub, self.files, self.jobs = index, keys, hub, files, jobs
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def connected(self, host: str) -> None:
        """A scout connected: sync it with the others that connect in the next BATCH_SECONDS."""
        self._pending.add(host)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._sync_pending)

    def _sync_pending(self) -> None:
        hosts, self._pending, self._timer = sorted(self._pending), set(), None
        task = asyncio.ensure_future(self.sync(hosts))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def plan(self, host: str, wants: list[str] | None = None, force: bool = False) -> list[PluginEntry]:
        row = self.keys.hosts.get(host)
        if row is None:
            return []
        installed = installed_versions(row.plugins)
        chosen = []
        for want in wants if wants is not None else self._wants(host):
            name, _, pin = want.partition(":")
            entry = self.index.choose(name, row.os, pin.lstrip("v") or None)
            if entry is not None and (force or installed.get(name) != entry.version):
                chosen.append(entry)
        return chosen

    def _wants(self, host: str) -> list[str]:
        wants = self.keys.wants.get(host) or []
        return wants if any(w.partition(":")[0] == ALWAYS for w in wants) else [ALWAYS, *wants]

    def task_args(self, host: str, entries: list[PluginEntry]) -> dict[str, Any]:
        via = self.hub.local_address(host)
        return {
            "plugins": [
                {"name": e.name, "version": e.version, "os": e.os, "sha256": e.sha256, "size": e.size,
                 **self.files.download(e.sha256, host, via)}
                for e in entries
            ]
        }

    def request(self, req: JobRequest, wants: list[str] | None, force: bool) -> None:
        """Fill a plugin.update job request: each host gets its own plan and download URLs."""
        req.args = {"want": list(wants or []), "force": force}
        req.host_args = lambda host: self.task_args(host, self.plan(host, wants, force))
        req.blobs = sorted({e.sha256 for e in self.index.entries if wants is None or e.name in _names(wants)})

    async def sync(self, hosts: list[str]) -> None:
        """Send plugin.update to the given online scouts that lack what they should have."""
        from troop.general.jobs import JobRequest

        need = [h for h in hosts if self.hub.is_online(h) and self.plan(h)]
        if not need:
            return
        req = JobRequest("plugin.update", Target(hosts=",".join(need)), "troop-general", timeout=300, audited=False)
        self.request(req, None, False)
        try:
            job = await self.jobs.submit(req)
        except Exception:
            log.exception("plugin sync failed")
            return
        log.info("plugin sync sent", extra={"fields": {"job": job.id, "hosts": len(need)}})


def _names(wants: list[str]) -> set[str]:
    return {w.partition(":")[0] for w in wants}
