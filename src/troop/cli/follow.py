"""Following a job to its end: read the events stream, print each host as it finishes.

The stream (`GET /jobs/{id}/events`) is the fast path.  If it ends early (a General restart,
a proxy timeout) we fall back to long-polling `GET /jobs/{id}?wait=`, whose answer is
authoritative; a host already printed is never printed twice.
"""

from __future__ import annotations

import time

from troop.cli.api import REQUEST_TIMEOUT, quote
from troop.cli.render import host_renderer, is_final

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from troop.cli.api import ApiClient, JsonObj
    from troop.cli.console import Console

# Long-poll slice: short enough that a proxy in between will not cut it.
POLL_WAIT = 60
_EVENT_KEYS = frozenset({"event", "host"})


def wait_for_job(client: ApiClient, job_id: object, wait: int = POLL_WAIT) -> JsonObj:
    """Long-poll until the job is done."""
    while True:
        started = time.monotonic()
        job = client.get(f"/jobs/{quote(job_id)}?wait={wait}", timeout=wait + REQUEST_TIMEOUT)
        if job.get("state") == "done":
            return job
        if time.monotonic() - started < 1.0:
            time.sleep(0.5)  # a General that ignores ?wait must not make us spin


class JobFollower:
    """Consumes one job's events; `human` prints host blocks, `live` prints output lines."""

    def __init__(
        self, client: ApiClient, console: Console, job_id: object, *,
        human: bool, live: bool, idle_timeout: float | None, kind: str | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.console = console
        self.job_id = job_id
        self.human = human
        self.live = live
        self.idle_timeout = idle_timeout
        self.job: JsonObj = {}
        self.hosts: dict[str, JsonObj] = {}
        self.width = 0  # longest host name, kept up to date: recomputing is O(hosts) per line
        self.finished: set[str] = set()
        self._streamed: set[str] = set()
        self._partial: dict[tuple[str, str], str] = {}

    def run(self) -> JsonObj:
        """Return the finished job (the API's full job object)."""
        path = f"/jobs/{quote(self.job_id)}/events"
        for event in self.client.events(path, idle_timeout=self.idle_timeout):
            kind = event.get("event")
            if kind == "job" and isinstance(event.get("job"), dict):
                self._on_job(event["job"])
            elif kind == "host" and isinstance(event.get("host"), str):
                self._on_host(event["host"], event)
            elif kind == "output" and isinstance(event.get("host"), str):
                self._on_output(event)
            elif kind == "done" and isinstance(event.get("job"), dict):
                return self._finish(event["job"])
            self.console.progress(len(self.finished), len(self.hosts))
        if self.job.get("state") == "done":
            return self._finish(self.job)
        self.console.clear()
        return self._finish(wait_for_job(self.client, self.job_id))

    def _on_job(self, job: JsonObj) -> None:
        self.job = job
        for host, result in (job.get("hosts") or {}).items():
            self._merge(host, result)
        for host in sorted(self.hosts):
            if is_final(self.hosts[host]):
                self._host_done(host)

    def _on_host(self, host: str, event: JsonObj) -> None:
        result = {k: v for k, v in event.items() if k not in _EVENT_KEYS}
        self._merge(host, result)
        if is_final(self.hosts[host]):
            self._host_done(host)

    def _merge(self, host: str, result: JsonObj) -> None:
        self.hosts[host] = {**self.hosts.get(host, {}), **result}
        self.width = max(self.width, len(host))

    def _on_output(self, event: JsonObj) -> None:
        if not (self.human and self.live):
            return
        host, stream = event["host"], str(event.get("stream") or "stdout")
        self._streamed.add(host)
        text = self._partial.pop((host, stream), "") + str(event.get("data") or "")
        *lines, rest = text.split("\n")
        if rest:
            self._partial[(host, stream)] = rest
        for line in lines:
            self._print_line(host, stream, line)

    def _print_line(self, host: str, stream: str, line: str) -> None:
        # stderr lines go to our stderr, so `2>/dev/null` hides them as the operator expects.
        to_err = stream == "stderr"
        style = self.console.err_style if to_err else self.console.out_style
        prefix = style.paint(f"{host.ljust(self.width)} |", "2")
        text = style.remote(line.rstrip("\r"))
        if to_err:
            self.console.err(f"{prefix} {style.paint(text, '31')}")
        else:
            self.console.out(f"{prefix} {text}")

    def _host_done(self, host: str) -> None:
        if host in self.finished:
            return
        self.finished.add(host)
        for stream in ("stdout", "stderr"):
            rest = self._partial.pop((host, stream), None)
            if rest is not None:
                self._print_line(host, stream, rest)
        if self.human:
            self.console.out(self._block(host, self.hosts[host]))

    def _block(self, host: str, result: JsonObj) -> str:
        render = host_renderer(self.kind or self.job.get("kind"))
        return render(
            host, result, self.console.out_style,
            width=self.width, output=host not in self._streamed,
        )

    def _finish(self, job: JsonObj) -> JsonObj:
        self.job = job
        final_hosts: dict[str, JsonObj] = job.get("hosts") or {}
        for host, result in final_hosts.items():
            self._merge(host, result)
        for host in sorted(final_hosts):
            self._host_done(host)  # also the hosts that ended without a final event
        self.console.clear()
        return job
