"""What the scout does with a task: check it, run it within the concurrency bound, report it.

Tasks outlive connections: a result finished while the General is away waits in the
outbox and is sent after the next handshake (the General stores it once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from troop import blacklist
from troop.protocol import messages
from troop.scout.runner import TaskSlots, run_command

if TYPE_CHECKING:
    from troop.scout.plugins import PluginStore
    from troop.scout.settings import ScoutSettings

log = logging.getLogger("troop.scout.tasks")
SEEN_TASKS = 20000
MAX_TIMEOUT = 7 * 86400.0
CANCELLED = "cancelled by the General: the job ended before this task did"
FILE_TASKS = {"file.push": "push", "file.read": "read", "file.ls": "ls"}
PLUGIN_TASKS = frozenset({"plugin.update", "plugin.versions", "plugin.run"})
LIFECYCLE_TASKS = frozenset({"scout.restart", "scout.stop", "scout.upgrade"})


class TaskRunner:
    def __init__(
        self,
        max_concurrency: int,
        local_blacklist: list[str],
        protected: list[str] | None = None,
        plugins: PluginStore | None = None,
        settings: ScoutSettings | None = None,
    ) -> None:
        self.protected = protected or []  # paths file tasks may not touch (the scout's own key)
        self.plugins = plugins
        self.settings = settings
        self.facts_changed: Callable[[], None] = lambda: None
        self.slots = TaskSlots(max_concurrency)
        self.local_blacklist = local_blacklist
        self.general_blacklist: list[str] = []
        self.send: Callable[[msgspec.Struct], bool] = lambda msg: False
        self.outbox: OrderedDict[str, messages.Result] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}

    def accept(self, task: messages.Task) -> None:
        # A task id never runs twice, whatever a replay or a confused General sends.
        if task.task_id in self._seen:
            log.warning("ignored a task id seen before", extra={"fields": {"task": task.task_id}})
            return
        self._seen[task.task_id] = None
        while len(self._seen) > SEEN_TASKS:
            self._seen.popitem(last=False)
        self.send(messages.Ack(task_id=task.task_id, state="received"))
        running = asyncio.create_task(self._run(task))
        running.add_done_callback(lambda t: self._cancelled_before_start(t, task.task_id))
        self._running[task.task_id] = running

    def holding(self) -> list[str]:
        """Ids of the tasks this scout still answers for: running, or a result not yet sent."""
        return list(dict.fromkeys([*self._running, *self.outbox]))

    def _cancelled_before_start(self, running: asyncio.Task[None], task_id: str) -> None:
        # A task cancelled before its first step never enters _run's handler: report it here.
        if running.cancelled():
            self._running.pop(task_id, None)
            self._report(messages.Result(task_id=task_id, state="failed", error=CANCELLED))

    def mark_seen(self, task_id: str) -> None:
        self._seen[task_id] = None

    def cancel(self, task_id: str) -> None:
        running = self._running.get(task_id)
        if running is not None:
            running.cancel()
        else:
            self._seen[task_id] = None  # should the task itself come after all, it will not run

    def flush_outbox(self) -> None:
        while self.outbox:
            task_id, result = next(iter(self.outbox.items()))
            if not self.send(result):
                return
            del self.outbox[task_id]

    async def _run(self, task: messages.Task) -> None:
        started = time.monotonic()
        try:
            result: messages.Result | None = await self._execute(task)
        except asyncio.CancelledError:
            result = messages.Result(
                task_id=task.task_id,
                state="failed",
                error=CANCELLED,
                duration=time.monotonic() - started,
            )
        except Exception as exc:  # a bug must cost one task, not the scout
            log.exception("task failed unexpectedly")
            result = messages.Result(
                task_id=task.task_id, state="failed", error=f"scout error: {exc}", duration=time.monotonic() - started
            )
        finally:
            self._running.pop(task.task_id, None)
        if result is not None:  # None: a restart or upgrade; the next scout process reports it
            self._report(result)

    def _report(self, result: messages.Result) -> None:
        if self.outbox or not self.send(result):
            self.outbox[result.task_id] = result
            self.flush_outbox()

    async def _execute(self, task: messages.Task) -> messages.Result | None:
        if not (0 < task.timeout <= MAX_TIMEOUT):  # also catches NaN
            return messages.Result(task_id=task.task_id, state="failed", error=f"invalid timeout {task.timeout!r}")
        if task.kind == "ping":
            return messages.Result(task_id=task.task_id, state="succeeded")
        if task.kind == "cmd" and task.command is not None:
            return await self._command(task, task.command)
        if task.kind in FILE_TASKS:
            from troop.scout import files  # only when a file task comes: keeps start-up lean

            run = getattr(files, FILE_TASKS[task.kind])
            return await self._bounded(task, run(task.task_id, dict(task.args), protected=self.protected))
        if task.kind in PLUGIN_TASKS and self.plugins is not None:
            return await self._plugin(task, self.plugins)
        if task.kind in LIFECYCLE_TASKS and self.plugins is not None and self.settings is not None:
            from troop.scout import lifecycle

            self.send(messages.Ack(task_id=task.task_id, state="running"))
            # Not under wait_for: cancelling a launch half-way could leave a marker with no restart.
            return await lifecycle.start(
                task, self.plugins, self.settings, lifecycle.restart_argv(), timeout=task.timeout
            )
        return messages.Result(
            task_id=task.task_id, state="failed", error=f"this scout does not support task kind {task.kind!r}"
        )

    async def _command(self, task: messages.Task, command: messages.Command) -> messages.Result:
        entry = self._blacklisted(command.argv or None, command.shell)
        if entry is not None:
            return messages.Result(
                task_id=task.task_id, state="refused", error=f"refused by the scout's blacklist (entry {entry!r})"
            )
        async with self.slots:
            self.send(messages.Ack(task_id=task.task_id, state="running"))
            return await run_command(
                task.task_id, command, task.timeout, on_output=self._streamer(task) if task.stream else None
            )

    async def _plugin(self, task: messages.Task, store: PluginStore) -> messages.Result:
        from troop.scout import plugins

        args = dict(task.args)
        if task.kind == "plugin.run":
            async with self.slots:
                self.send(messages.Ack(task_id=task.task_id, state="running"))
                return await plugins.run(
                    task.task_id,
                    args,
                    store,
                    lambda argv: self._blacklisted(argv, None),
                    task.timeout,
                    self._streamer(task) if task.stream else None,
                )
        if task.kind == "plugin.versions":
            return await plugins.versions(task.task_id, args, store)
        result = await self._bounded(task, plugins.update(task.task_id, args, store))
        self.facts_changed()
        return result

    async def _bounded(self, task: messages.Task, work: Awaitable[messages.Result]) -> messages.Result:
        """Run work in a concurrency slot, within the task's timeout."""
        async with self.slots:
            self.send(messages.Ack(task_id=task.task_id, state="running"))
            try:
                return await asyncio.wait_for(work, task.timeout)
            except TimeoutError:
                return messages.Result(
                    task_id=task.task_id, state="timed_out", error=f"timed out after {task.timeout:g}s"
                )

    def _blacklisted(self, argv: list[str] | None, shell: str | None) -> str | None:
        return blacklist.check(self.general_blacklist + self.local_blacklist, argv, shell)

    def _streamer(self, task: messages.Task) -> Callable[[str, bytes], asyncio.Future[None]]:
        async def on_output(stream: str, data: bytes) -> None:
            self.send(messages.Output(task_id=task.task_id, stream=stream, data=data))

        return on_output  # type: ignore[return-value]
