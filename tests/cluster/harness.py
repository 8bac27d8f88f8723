"""Several Generals on one PostgreSQL store and one NATS bus, as real local processes.

Like troop.localfleet.Fleet, but for scale-out (see troop.general.cluster): a standalone
troop-filemanager, N troop-general processes in cluster mode (`--store URL --bus nats://...`)
and scouts that know every General's address. Everything is synchronous and talks to the
processes only through their ports, their files and their logs.

What the harness knows without asking the product (so it keeps working while the cluster API
is incomplete):
- where each scout is connected: from the scout's own log ("connected to the General at
  HOST:PORT" / "connection to HOST:PORT ended"), mapped to a General by its scout port;
- whether a General is up: its process and GET /api/v1/health.
It needs GET /api/v1/hosts for `online`; /api/v1/health's "general" and /api/v1/generals are
read when present and None otherwise.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.natsserver import NatsServer
from troop.localfleet import cluster_general, free_port

FINAL = frozenset({"offline", "succeeded", "failed", "timed_out", "lost", "refused"})
"""Host states that end a host (`sent` is final only at the deadline, with its error)."""

SCOUT_NAME_VAR = "SCOUT_NAME"
"""Each scout process runs with SCOUT_NAME=<its --hostname>, so commands can echo their host."""

_CONNECTED = re.compile(r"connected to the General at (\S+):(\d+)")
_ENDED = re.compile(r"connection to \S+:\d+ ended|closed connection to \S+:\d+|the General refused this scout")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def grep(path: Path, pattern: str, lines: int = 20) -> str:
    """The last `lines` lines of a log that match `pattern`."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    found = re.compile(pattern)
    return "\n".join([line for line in text.splitlines() if found.search(line)][-lines:])


class ApiError(Exception):
    """A non-2xx answer from a General's API."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class GeneralProc:
    index: int
    data_dir: Path
    log: Path
    api_port: int
    scout_port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def name(self) -> str:
        return "ABCDEFGHIJ"[self.index] if self.index < 10 else str(self.index)


@dataclass
class Cluster:
    """Processes under `root`: filemanager/, general-<i>/, scouts/<name>/ and one log per process."""

    root: Path
    store_url: str
    nats: NatsServer
    heartbeat: float = 1.0
    grace: float = 2.0
    reconnect_min: float = 0.1
    reconnect_max: float = 1.0
    general_env: dict[str, str] = field(default_factory=dict)
    scout_env: dict[str, str] = field(default_factory=dict)
    print_logs: bool = True  # print the log tails to stderr when the `with` block fails
    generals: list[GeneralProc] = field(default_factory=list)
    scouts: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    fm: subprocess.Popen[bytes] | None = None
    fm_port: int = 0
    _scout_order: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The developer's own TROOP_* settings (TROOP_URL, TROOP_STORE, ...) must not leak in.
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith("TROOP_")}
        self._base_env["PYTHONUNBUFFERED"] = "1"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.print_logs and exc is not None and not isinstance(exc, KeyboardInterrupt):
                print(self.report(), file=sys.stderr)
        finally:
            self.stop()

    def start(self, generals: int, scouts: Iterable[str], *, timeout: float = 120.0) -> None:
        """FileManager, then the Generals one after another, then the scouts; wait until all are connected."""
        self.start_filemanager()
        for _ in range(generals):
            self.add_general()
        names = list(scouts)
        for name in names:
            self.start_scout(name)
        self.wait_connected(names, timeout=timeout)

    def stop(self) -> None:
        """Stop everything this cluster started (SIGTERM, then SIGKILL for what lingers)."""
        procs: list[subprocess.Popen[bytes]] = list(self.scouts.values())
        self.scouts.clear()
        procs += [g.proc for g in self.generals if g.proc is not None]
        if self.fm is not None:
            procs.append(self.fm)
        _terminate_all(procs, grace=10.0)
        for g in self.generals:
            g.proc = None
        self.fm = None

    # ------------------------------------------------------------------ FileManager
    @property
    def fm_dir(self) -> Path:
        return self.root / "filemanager"

    def start_filemanager(self, timeout: float = 30.0) -> None:
        self.fm_port = self.fm_port or free_port()
        log = self.root / "filemanager.log"
        with log.open("ab") as fh:
            self.fm = subprocess.Popen(
                [_bin("troop-filemanager"), "--data-dir", str(self.fm_dir), "--listen", f"127.0.0.1:{self.fm_port}"],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=self._base_env,
            )  # fmt: skip
        fm = self.fm

        def ready() -> bool:
            if fm.poll() is not None:
                raise RuntimeError(f"troop-filemanager exited with {fm.returncode}:\n{tail(log)}")
            if not ((self.fm_dir / "service.token").exists() and (self.fm_dir / "filemanager.key").exists()):
                return False
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.fm_port}/fm/v1/openapi.json", timeout=1).close()
            except urllib.error.HTTPError:
                return True  # it answers
            except OSError:
                return False
            return True

        wait_for(ready, timeout, "the FileManager to answer")

    # ------------------------------------------------------------------ Generals
    def add_general(self, timeout: float = 60.0) -> GeneralProc:
        """A new General (its own data dir and ports), started and answering."""
        i = len(self.generals)
        g = GeneralProc(
            index=i,
            data_dir=self.root / f"general-{i}",
            log=self.root / f"general-{i}.log",
            api_port=free_port(),
            scout_port=free_port(),
        )
        self.generals.append(g)
        self.start_general(i, timeout=timeout)
        return g

    def start_general(self, i: int, timeout: float = 60.0) -> None:
        """Start General i (again: same data dir, same ports) and wait until its API answers."""
        g = self.generals[i]
        if g.running:
            return
        assert self.fm is not None, "start_filemanager() first"
        args, fm_env = cluster_general(
            g.data_dir, g.api_port, g.scout_port, self.store_url, self.nats.url, self.fm_dir, self.fm_port
        )
        env = {
            **self._base_env,
            **fm_env,
            "TROOP_HEARTBEAT": str(self.heartbeat),
            "TROOP_GRACE": str(self.grace),
            "TROOP_KEY_BITS": "2048",
            **self.general_env,
        }
        g.starts += 1
        with g.log.open("ab") as fh:
            fh.write(f"===== harness: start #{g.starts} of General {g.name} (index {i}) =====\n".encode())
            fh.flush()
            g.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: self._answers(g), timeout, f"General {g.name} to answer")
        if i > 0:
            # The admin token lives in the shared store: the first General's file works everywhere.
            status, body = self.call(i, "GET", "/api/v1/hosts")
            if status != 200:
                raise RuntimeError(f"General {g.name} refuses General A's admin token: HTTP {status} {body}")

    def kill_general(self, i: int, sig: int = signal.SIGKILL) -> None:
        """A crash (SIGKILL by default): no goodbye to scouts, store or bus."""
        g = self.generals[i]
        if g.proc is not None and g.proc.poll() is None:
            g.proc.send_signal(sig)
            try:
                g.proc.wait(15)
            except subprocess.TimeoutExpired:
                g.proc.kill()
                g.proc.wait()

    def stop_general(self, i: int) -> None:
        """A clean stop (SIGTERM)."""
        self.kill_general(i, signal.SIGTERM)

    def restart_general(self, i: int, timeout: float = 60.0) -> None:
        self.kill_general(i, signal.SIGTERM)
        self.start_general(i, timeout=timeout)

    def _answers(self, g: GeneralProc) -> bool:
        assert g.proc is not None
        if g.proc.poll() is not None:
            raise RuntimeError(f"troop-general {g.name} exited with {g.proc.returncode}:\n{tail(g.log)}")
        try:
            with urllib.request.urlopen(g.url + "/api/v1/health", timeout=1) as resp:
                resp.read()
        except OSError:
            return False
        return g.index > 0 or self.token_file.exists()

    @property
    def token_file(self) -> Path:
        return self.generals[0].data_dir / "admin.token"

    @property
    def token(self) -> str:
        """The admin token written by the first General on the first start (shared through the store)."""
        return self.token_file.read_text().strip()

    def url(self, i: int) -> str:
        return self.generals[i].url

    def index_of_port(self, scout_port: int) -> int | None:
        for g in self.generals:
            if g.scout_port == scout_port:
                return g.index
        return None

    # ------------------------------------------------------------------ scouts
    def start_scout(self, name: str, *tags: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A scout that knows every General. The list is rotated per scout so that the ones of a
        dead General do not all move to the same next one; the scout itself picks where to start."""
        old = self.scouts.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"scout {name} is already running")
        k = self._scout_order.setdefault(name, len(self._scout_order))
        n = len(self.generals)
        addresses = [f"127.0.0.1:{self.generals[(k + j) % n].scout_port}" for j in range(n)]
        args = [
            _bin("troop-scout"),
            "--general", ",".join(addresses),
            "--hostname", name,
            "--data-dir", str(self.root / "scouts" / name),
            *[a for t in tags for a in ("--tag", t)],
        ]  # fmt: skip
        full_env = {
            **self._base_env,
            SCOUT_NAME_VAR: name,
            "TROOP_RECONNECT_MIN": str(self.reconnect_min),
            "TROOP_RECONNECT_MAX": str(self.reconnect_max),
            "TROOP_CONNECT_TIMEOUT": "3",
            **self.scout_env,
            **(env or {}),
        }
        with self.scout_log(name).open("ab") as fh:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
        self.scouts[name] = proc
        return proc

    def stop_scout(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.scouts.pop(name, None)
        if proc is not None:
            if sig != signal.SIGTERM and proc.poll() is None:
                proc.send_signal(sig)
            _terminate_all([proc], grace=10.0)

    def scout_log(self, name: str) -> Path:
        return self.root / f"scout-{name}.log"

    def scout_disconnects(self, name: str) -> int:
        """How many times this scout's log says a connection to a General ended."""
        try:
            text = self.scout_log(name).read_text(errors="replace")
        except OSError:
            return 0
        return len(_ENDED.findall(text))

    def connected_to(self, name: str) -> int | None:
        """Index of the General this scout last said it connected to, None when it says it is not
        connected. (A killed General's scouts may still name it for a moment: check `running`.)"""
        try:
            text = self.scout_log(name).read_text(errors="replace")
        except OSError:
            return None
        where: int | None = None
        for line in text.splitlines():
            m = _CONNECTED.search(line)
            if m:
                where = self.index_of_port(int(m.group(2)))
            elif _ENDED.search(line):
                where = None
        return where

    def placement(self) -> dict[str, int | None]:
        """Scout name -> index of the running General it is connected to, or None."""
        out: dict[str, int | None] = {}
        for name, proc in self.scouts.items():
            where = self.connected_to(name) if proc.poll() is None else None
            out[name] = where if where is not None and self.generals[where].running else None
        return out

    def on(self, i: int) -> list[str]:
        """The scouts connected to General i now (from their logs)."""
        return sorted(n for n, where in self.placement().items() if where == i)

    def wait_connected(self, names: Iterable[str] | None = None, timeout: float = 60.0) -> None:
        """Every named scout (default: all) is connected to a running General, and that General
        lists it as online. Asks each General only about its own scouts: needs no cluster view."""
        wanted = sorted(self.scouts if names is None else names)
        missing: list[str] = wanted

        def ready() -> bool:
            nonlocal missing
            for name in wanted:
                proc = self.scouts.get(name)
                if proc is None or proc.poll() is not None:
                    raise RuntimeError(f"scout {name} is not running:\n{tail(self.scout_log(name))}")
            where = self.placement()
            missing = [n for n in wanted if where.get(n) is None]
            if missing:
                return False
            for i in sorted({w for n in wanted if (w := where[n]) is not None}):
                online = {h["hostname"] for h in self.hosts(i) if h.get("online")}
                missing = [n for n in wanted if where[n] == i and n not in online]
                if missing:
                    return False
            return True

        wait_for(ready, timeout, lambda: f"scouts to connect; not yet: {missing[:10]} ({len(missing)} in all)")

    def wait_online(self, names: Iterable[str], via: int = 0, timeout: float = 30.0) -> None:
        """General `via` lists every named host as online (in cluster mode: wherever it is connected)."""
        wanted = set(names)
        missing: set[str] = wanted

        def ready() -> bool:
            nonlocal missing
            online = {h["hostname"] for h in self.hosts(via) if h.get("online")}
            missing = wanted - online
            return not missing

        wait_for(
            ready,
            timeout,
            lambda: (
                f"General {self.generals[via].name} to list {len(missing)} more host(s) as online: "
                f"{sorted(missing)[:10]}"
            ),
        )

    def rebalance(self, min_each: int, timeout: float = 60.0) -> None:
        """Restart scouts of the busiest Generals until every running General has at least
        `min_each` of them (a scout picks where to connect at random; moves are one-way)."""
        running = [g.index for g in self.generals if g.running]
        if min_each * len(running) > len(self.scouts):
            raise ValueError(f"{len(self.scouts)} scouts cannot give {min_each} to each of {len(running)} Generals")
        for _ in range(20):
            counts = {i: self.on(i) for i in running}
            short = sum(max(0, min_each - len(v)) for v in counts.values())
            if short == 0:
                return
            # Each restarted scout lands on a given General with odds 1/len(running): restart enough.
            busiest = sorted(counts, key=lambda i: -len(counts[i]))
            spare = [n for i in busiest for n in counts[i][min_each:]]
            batch = spare[: min(len(spare), short * len(running))]
            for name in batch:
                self.stop_scout(name)
                self.start_scout(name)
            self.wait_connected(timeout=timeout)
        raise RuntimeError(f"could not rebalance scouts: {[len(self.on(i)) for i in running]}")

    def heal(self, min_each: int = 0, timeout: float = 90.0) -> None:
        """Back to a whole cluster: NATS up, every General and scout running and connected."""
        if not self.nats.running:
            self.nats.start()
        if self.fm is None or self.fm.poll() is not None:
            self.start_filemanager()
        for g in self.generals:
            if not g.running:
                self.start_general(g.index)
        for name, proc in list(self.scouts.items()):
            if proc.poll() is not None:
                del self.scouts[name]
                self.start_scout(name)
        self.wait_connected(timeout=timeout)
        if min_each:
            self.rebalance(min_each, timeout=timeout)

    # ------------------------------------------------------------------ API and CLI
    def call(
        self, i: int, method: str, path: str, body: Any = None, *, token: str | None = None, timeout: float = 60.0
    ) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body) from General i; never raises on an HTTP error status."""
        url = self.generals[i].url + path
        req = urllib.request.Request(
            url,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _json(err.read())

    def api(
        self, i: int, method: str, path: str, body: Any = None, *, token: str | None = None, timeout: float = 60.0
    ) -> Any:
        """Decoded JSON from General i; ApiError on any status other than 2xx."""
        status, data = self.call(i, method, path, body, token=token, timeout=timeout)
        if not 200 <= status < 300:
            raise ApiError(status, data, self.generals[i].url + path)
        return data

    def cli(
        self, i: int, *args: str, token: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**self._base_env, "TROOP_URL": self.url(i), "TROOP_TOKEN": token or self.token, "NO_COLOR": "1"}
        return subprocess.run(
            [_bin("troop"), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    def hosts(self, i: int) -> list[dict[str, Any]]:
        hosts: list[dict[str, Any]] = self.api(i, "GET", "/api/v1/hosts", timeout=10)["hosts"]
        return hosts

    def health(self, i: int) -> dict[str, Any]:
        with urllib.request.urlopen(self.url(i) + "/api/v1/health", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def gid(self, i: int) -> str | None:
        """General i's id from /api/v1/health, or None while the route does not give it."""
        gid = self.health(i).get("general")
        return str(gid) if gid is not None else None

    def generals_view(self, i: int) -> list[dict[str, Any]] | None:
        """GET /api/v1/generals on General i, or None when the route does not exist."""
        status, data = self.call(i, "GET", "/api/v1/generals", timeout=10)
        if status == 404 and not (isinstance(data, dict) and "generals" in data):
            return None
        if status != 200:
            raise ApiError(status, data, self.url(i) + "/api/v1/generals")
        generals: list[dict[str, Any]] = data["generals"]
        return generals

    # ------------------------------------------------------------------ jobs
    def submit(self, i: int, body: dict[str, Any], *, wait: float | None = None) -> dict[str, Any]:
        """POST /api/v1/jobs on General i (with ?wait=), the answer's JSON."""
        path = "/api/v1/jobs" + (f"?wait={wait:g}" if wait is not None else "")
        job: dict[str, Any] = self.api(i, "POST", path, body, timeout=(wait or 0) + 30)
        return job

    def job(self, i: int, job_id: str, *, wait: float | None = None) -> dict[str, Any]:
        path = f"/api/v1/jobs/{job_id}" + (f"?wait={wait:g}" if wait is not None else "")
        job: dict[str, Any] = self.api(i, "GET", path, timeout=(wait or 0) + 30)
        return job

    def wait_job(self, i: int, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The job through General i once it is done; TimeoutError (with its last state) if it is not."""
        deadline = time.monotonic() + timeout
        job = self.job(i, job_id)
        while job["state"] != "done":
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} not done via General {self.generals[i].name}: {summary(job)}")
            job = self.job(i, job_id, wait=max(1, min(10, int(left))))
        return job

    def job_counts(self, i: int, job_id: str) -> dict[str, int]:
        """`counts` of the job in GET /api/v1/jobs (read from the store: one per stored host row)."""
        for row in self.api(i, "GET", "/api/v1/jobs?limit=1000")["jobs"]:
            if row["job"] == job_id:
                counts: dict[str, int] = row["counts"]
                return counts
        raise AssertionError(f"job {job_id} is not in GET /api/v1/jobs of General {self.generals[i].name}")

    def events(self, i: int, job_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every line of GET /api/v1/jobs/ID/events on General i, until the `done` line."""
        req = urllib.request.Request(
            f"{self.url(i)}/api/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {self.token}"}
        )
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            for raw in resp:
                if raw.strip():
                    out.append(json.loads(raw))
                    if out[-1].get("event") == "done":
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"event stream of {job_id} not done in {timeout}s; got {len(out)} lines")
        return out

    # ------------------------------------------------------------------ diagnosis
    def report(self, lines: int = 40) -> str:
        """Tails of the logs: every General, the FileManager, nats-server, and scouts that complained."""
        parts = []
        for g in self.generals:
            state = "running" if g.running else f"exited {g.proc.returncode}" if g.proc is not None else "stopped"
            parts.append(f"----- General {g.name} ({state}, api {g.api_port}, scouts {g.scout_port}): {g.log}")
            complaints = grep(g.log, r" (warning|error|critical) |Traceback", lines // 2)
            if complaints:
                parts.append(f"  (last warnings and errors)\n{complaints}\n  (last lines)")
            parts.append(tail(g.log, lines // 2 if complaints else lines))
        parts.append(f"----- FileManager: {self.root / 'filemanager.log'}")
        parts.append(tail(self.root / "filemanager.log", 10))
        parts.append(f"----- nats-server ({'running' if self.nats.running else 'down'}): {self.nats._log}")
        parts.append(tail(self.nats._log, 10))
        complaining = 0
        for name in sorted(self._scout_order):
            text = tail(self.scout_log(name), 8)
            if " warning " in text or " error " in text or "Traceback" in text:
                parts.append(f"----- scout {name}: {self.scout_log(name)}")
                parts.append(text)
                complaining += 1
                if complaining >= 8:
                    parts.append("----- (more scouts complained; see their logs)")
                    break
        where = self.placement() if self.scouts else {}
        parts.append(
            "----- placement: "
            + ", ".join(f"{g.name}={sum(1 for w in where.values() if w == g.index)}" for g in self.generals)
            + f", none={sum(1 for w in where.values() if w is None)}"
        )
        return "\n".join(parts)


def summary(job: dict[str, Any]) -> str:
    """One line: job state and host states with their errors, for assertion messages."""
    by_state: dict[str, list[str]] = {}
    for name, h in sorted(job.get("hosts", {}).items()):
        key = h["state"] + (f" ({h['error']})" if h.get("error") else "")
        by_state.setdefault(key, []).append(name)
    hosts = "; ".join(f"{k}: {len(v)} {v[:6]}" for k, v in sorted(by_state.items()))
    return f"job {job.get('job')} {job.get('state')}: {hosts}"


def wait_for(check: Callable[[], bool], timeout: float, what: str | Callable[[], str], every: float = 0.1) -> None:
    """Poll `check` until it is true; TimeoutError naming `what` (a string, or a function for a late message)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what() if callable(what) else what}")
        time.sleep(every)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _terminate_all(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every live process at once, wait up to `grace` seconds, SIGKILL the rest."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
