"""Many scouts in one process: how fast does one General ping 1,000 and 10,000 of them?

    .venv/bin/python bench/swarm.py --counts 1000,10000 [--runs 5] [--procs 1] [--json OUT] [--profile]

Each simulated scout is a real identity: its own 2048-bit RSA key (made once into
bench/work/keys/ on every core, then reused), its own TCP connection to the General, the real
handshake (troop.protocol.handshake: signed Hello, Welcome, key unwrap) and the real sealed
channel (AES-256-GCM, sequence numbers). It answers Task(kind="ping") as troop-scout does,
with Ack(received) then Result(succeeded), sends heartbeats, and honours re-keys. Any other
task kind gets a failed Result. Nothing here is a shortcut through the General: it sees
10,000 ordinary scouts.

The parent starts a General (SQLite, auto_accept, its own temp dir), grows the swarm to each
count, then times `POST /api/v1/jobs?wait=60 {"kind": "ping", "target": {"hosts": "*"}}`
from submit to the answer naming every host (one warm-up, then --runs), and reads the
General's VmRSS/PSS. Above ~25,000 connections the scouts dial from several 127.0.0.x
source addresses (one source address has ~28k ephemeral ports).
A worker given several General addresses (`--general H:P,H:P,...`, or SwarmBench.attach() for
Generals started elsewhere, as bench/cluster.py does) spreads its scouts over them round-robin:
scout i dials address i mod n.
With --profile it records the General with py-spy (bench/work/tools-venv) during extra
pings at the largest count and writes the hottest functions next to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing import Pool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, WORK, Procs, api_json, free_port, log, memory, port_open, register, register_pid, wait_for

KEYS = WORK / "keys"
KEY_BITS = 2048
PER_SOURCE = 20000  # connections per 127.0.0.x source address beyond the first 25k


# ------------------------------------------------------------------ keys


def _key_path(i: int) -> Path:
    return KEYS / f"scout-{i:05d}.pem"


def _make_key(i: int) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = _key_path(i)
    if path.exists():
        return 0
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(pem)
    tmp.rename(path)
    return 1


def ensure_keys(count: int) -> dict[str, Any]:
    """Make the missing keys of scouts 0..count-1 on every core; return how long it took."""
    KEYS.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not _key_path(i).exists()]
    start = time.monotonic()
    if missing:
        log(f"swarm: generating {len(missing)} RSA-{KEY_BITS} keys on {os.cpu_count()} cores (cached after)")
        with Pool(os.cpu_count() or 2) as pool:
            for done, _ in enumerate(pool.imap_unordered(_make_key, missing, chunksize=16), 1):
                if done % 1000 == 0:
                    log(f"swarm: {done}/{len(missing)} keys")
    return {"generated": len(missing), "seconds": round(time.monotonic() - start, 1), "cached": count - len(missing)}


def load_keypair(i: int) -> Any:
    from cryptography.hazmat.primitives import serialization

    from troop.protocol.crypto import KeyPair

    # Our own keys, checked when made: skip OpenSSL's slow RSA consistency check on load.
    key = serialization.load_pem_private_key(_key_path(i).read_bytes(), None, unsafe_skip_rsa_key_validation=True)
    return KeyPair(key)  # type: ignore[arg-type]


# ------------------------------------------------------------------ a simulated scout


class SimScout(asyncio.Protocol):
    def __init__(self, swarm: Swarm, name: str, keypair: Any) -> None:
        from troop.protocol.frames import FrameDecoder

        self.swarm, self.name, self.keypair = swarm, name, keypair
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.channel: Any = None
        self.state = "connecting"
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.pending: list[tuple[int, bytes]] = []
        self.closed = asyncio.get_running_loop().create_future()

    # -- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "lost"
        self.swarm.lost(self)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if self.channel is None:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result((frame.kind, frame.body))
                else:
                    self.pending.append((frame.kind, frame.body))
            else:
                self.handle(frame.kind, frame.body)

    # -- handshake
    async def _read(self, timeout: float) -> tuple[int, bytes]:
        if self.pending:
            return self.pending.pop(0)
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        finally:
            self.waiter = None

    async def handshake(self, timeout: float = 60.0) -> None:
        from troop.protocol import handshake, messages
        from troop.protocol.channel import SCOUT_TO_GENERAL, SealedChannel, now_ms
        from troop.protocol.crypto import new_session_key
        from troop.protocol.frames import KIND_CLEAR, encode_frame

        assert self.transport is not None
        kind, body = await self._read(timeout)
        hello = messages.decode_clear(body) if kind == KIND_CLEAR else None
        if not isinstance(hello, messages.ServerHello):
            raise RuntimeError(f"expected ServerHello, got {hello!r}")
        general_key = self.swarm.general_key(hello.general_key)
        session_key = new_session_key()
        signed, nonce = handshake.build_hello(self.keypair, self.name, self.swarm.facts, hello, session_key, now_ms())
        self.transport.write(encode_frame(KIND_CLEAR, messages.encode(signed)))
        kind, body = await self._read(timeout)
        msg = messages.decode_clear(body) if kind == KIND_CLEAR else None
        if not isinstance(msg, messages.Signed):
            raise RuntimeError(f"expected the Welcome, got {msg!r}")
        welcome, g2s = handshake.open_welcome(msg, general_key, nonce, self.keypair, self.name)
        if welcome.status != "accepted":
            raise RuntimeError(f"{self.name}: key {welcome.status} (is the General in auto-accept?)")
        self.channel = SealedChannel(self.name, SCOUT_TO_GENERAL, session_key, g2s, recv_key_id=welcome.key_id)
        self.swarm.heartbeat = welcome.heartbeat
        self.state = "connected"
        for kind, body in self.pending:  # frames that came right behind the Welcome
            self.handle(kind, body)
        self.pending = []

    # -- sealed traffic
    def send(self, msg: Any) -> None:
        from troop.protocol.frames import KIND_SEALED, encode_frame

        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(KIND_SEALED, self.channel.seal(msg)))

    def handle(self, kind: int, body: bytes) -> None:
        from troop.protocol import handshake, messages

        msg = self.channel.open(body)
        if isinstance(msg, messages.Task):
            self.swarm.tasks[msg.kind] += 1
            # What troop-scout does: Ack on arrival, then the Result from the task it starts.
            self.send(messages.Ack(task_id=msg.task_id, state="received"))
            if msg.kind == "ping":
                result = messages.Result(task_id=msg.task_id, state="succeeded")
            else:
                result = messages.Result(task_id=msg.task_id, state="failed", error="a swarm scout only answers ping")
            asyncio.get_running_loop().call_soon(self.send, result)
        elif isinstance(msg, messages.Rekey):
            self.channel.add_recv_key(msg.key_id, handshake.open_rekey(msg, self.keypair))
            self.send(messages.RekeyAck(key_id=msg.key_id))


class Swarm:
    def __init__(self, host: str, port: int, more: list[tuple[str, int]] | None = None) -> None:
        from troop import __version__
        from troop.protocol import messages

        self.host, self.port = host, port
        self.addresses = [(host, port), *(more or [])]  # scout i dials addresses[i % n]
        self.scouts: dict[str, SimScout] = {}
        self.tasks: Counter[str] = Counter()
        self.lost_count = 0
        self.heartbeat = 15.0
        self._general: dict[bytes, Any] = {}
        self.facts = messages.Facts(
            os="linux",
            platform=platform.platform(),
            arch=platform.machine(),
            ip="127.0.0.1",
            tags=["swarm"],
            version=__version__,
            python=platform.python_version(),
        )
        self._beat: asyncio.Task[None] | None = None

    def general_key(self, der: bytes) -> Any:
        from troop.protocol.crypto import PublicKey

        if der not in self._general:
            self._general[der] = PublicKey.from_der(der)
        return self._general[der]

    def lost(self, scout: SimScout) -> None:
        if self.scouts.get(scout.name) is scout:
            del self.scouts[scout.name]
            self.lost_count += 1

    async def connect_one(self, i: int, source: str | None) -> None:
        name = f"swarm-{i:05d}"
        keypair = load_keypair(i)
        host, port = self.addresses[i % len(self.addresses)]
        for attempt in range(5):
            loop = asyncio.get_running_loop()
            try:
                _, proto = await loop.create_connection(
                    lambda: SimScout(self, name, keypair),
                    host,
                    port,
                    local_addr=(source, 0) if source else None,
                )
                await proto.handshake()
                self.scouts[name] = proto
                return
            except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
                if attempt == 4:
                    raise RuntimeError(f"{name}: {exc}") from exc
                await asyncio.sleep(0.5 * (attempt + 1))

    async def grow(self, first: int, count: int, parallel: int = 48) -> None:
        sem = asyncio.Semaphore(parallel)

        async def one(i: int) -> None:
            async with sem:
                source = None if i < 25000 else f"127.0.0.{2 + (i - 25000) // PER_SOURCE}"
                await self.connect_one(i, source)

        results = await asyncio.gather(*(one(i) for i in range(first, first + count)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            print(f"error {len(errors)} failed, first: {errors[0]}", flush=True)
        if self._beat is None:
            self._beat = asyncio.create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        from troop.protocol import messages
        from troop.protocol.channel import now_ms

        while True:
            # Spread over the interval, as independent scouts would be.
            scouts = list(self.scouts.values())
            step = max(1, len(scouts) // 20)
            for k in range(0, len(scouts), step):
                beat = messages.Heartbeat(ts=now_ms())
                for s in scouts[k : k + step]:
                    if s.state == "connected":
                        s.send(beat)
                await asyncio.sleep(self.heartbeat / 2 / 20)
            await asyncio.sleep(self.heartbeat / 2)


async def worker_main(host: str, port: int, more: list[tuple[str, int]] | None = None) -> None:
    """A swarm process: reads `add FIRST COUNT` lines on stdin, answers `ready N` on stdout."""
    swarm = Swarm(host, port, more)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        parts = line.decode().split()
        if parts and parts[0] == "add":
            start = time.monotonic()
            await swarm.grow(int(parts[1]), int(parts[2]))
            took = time.monotonic() - start
            print(f"ready {len(swarm.scouts)} {took:.2f} lost={swarm.lost_count} tasks={dict(swarm.tasks)}", flush=True)
        elif parts and parts[0] == "stats":
            print(f"stats {len(swarm.scouts)} lost={swarm.lost_count} tasks={dict(swarm.tasks)}", flush=True)


# ------------------------------------------------------------------ the parent


@contextlib.contextmanager
def running_swarm(scouts: int) -> Iterator[tuple[SwarmBench, Procs, Path, dict[str, Any]]]:
    """A General with `scouts` swarm scouts connected; everything stopped on the way out."""
    raise_fd_limit()
    ensure_keys(scouts)
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="troop-swarm-") as tmp:
        bench = SwarmBench(Path(tmp), procs, nprocs=1)
        try:
            bench.start()
            grown = bench.grow_to(scouts)
            yield bench, procs, Path(tmp), grown
        finally:
            bench.stop()
            procs.stop()


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


class SwarmBench:
    def __init__(self, root: Path, procs: Procs, nprocs: int) -> None:
        self.root, self.procs, self.nprocs = root, procs, nprocs
        self.api_port, self.scout_port = free_port(), free_port()
        self.general: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.size = 0
        self.token_file = self.root / "general" / "admin.token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def attach(self, api_port: int, token_file: Path, scout_addresses: list[str]) -> None:
        """Instead of start(): use Generals started elsewhere. The API calls go to `api_port`
        with the token in `token_file`; the scouts are spread round-robin over `scout_addresses`
        (HOST:PORT each). Only the workers are started (and stopped by stop())."""
        self.api_port, self.token_file = api_port, token_file
        self.start_workers(scout_addresses)

    def start(self) -> None:
        exe = str(Path(sys.executable).with_name("troop-general"))
        env = {**os.environ, "TROOP_FILEMANAGER_LISTEN": f"127.0.0.1:{free_port()}"}
        self.general = self.procs.start(
            "troop-general (swarm)",
            [
                exe,
                "--data-dir",
                str(self.root / "general"),
                "--api-listen",
                f"127.0.0.1:{self.api_port}",
                "--scout-listen",
                f"127.0.0.1:{self.scout_port}",
                "--auto-accept",
                "--log-level",
                "warning",
            ],
            log_path=self.root / "general.log",
            env=env,
        )
        wait_for(
            lambda: port_open("127.0.0.1", self.api_port) and (self.root / "general" / "admin.token").exists(),
            60,
            "the General",
        )
        self.start_workers([f"127.0.0.1:{self.scout_port}"])

    def start_workers(self, scout_addresses: list[str]) -> None:
        for _ in range(self.nprocs):
            w = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--general", ",".join(scout_addresses)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(self.root / "worker.log").open("ab"),
                start_new_session=True,
            )
            register_pid(w.pid, "swarm worker")
            self.procs.items.append(("swarm worker", w))
            self.workers.append(w)

    def grow_to(self, count: int) -> dict[str, Any]:
        add = count - self.size
        share = [add // self.nprocs + (1 if k < add % self.nprocs else 0) for k in range(self.nprocs)]
        first = self.size
        start = time.monotonic()
        for w, n in zip(self.workers, share, strict=True):
            assert w.stdin is not None
            w.stdin.write(f"add {first} {n}\n".encode())
            w.stdin.flush()
            first += n
        lines = []
        for w in self.workers:
            assert w.stdout is not None
            lines.append(w.stdout.readline().decode().strip())
        took = time.monotonic() - start
        self.size = count
        online = self.online()
        return {
            "seconds": round(took, 1),
            "per_second": round(add / took, 1) if took else None,
            "online": online,
            "workers": lines,
        }

    def online(self) -> int:
        hosts = self.api("GET", "/api/v1/hosts")["hosts"]
        return sum(1 for h in hosts if h["online"])

    def api(self, method: str, path: str, body: Any = None, timeout: float = 180) -> Any:
        return api_json(self.api_port, self.token, method, path, body, timeout)

    def ping(self) -> tuple[float, int, int, str]:
        start = time.perf_counter()
        job = self.api("POST", "/api/v1/jobs?wait=60", {"kind": "ping", "target": {"hosts": "*"}})
        secs = time.perf_counter() - start
        states = Counter(h["state"] for h in job["hosts"].values())
        return secs, states.get("succeeded", 0), len(job["hosts"]), json.dumps(dict(states))

    def measure(self, count: int, runs: int) -> dict[str, Any]:
        samples, oks, totals, states = [], [], [], []
        for i in range(runs + 1):
            secs, ok, total, st = self.ping()
            if i == 0:
                continue  # warm-up
            samples.append(secs)
            oks.append(ok)
            totals.append(total)
            states.append(st)
            time.sleep(0.5)
        assert self.general is not None
        return {
            "median": round(statistics.median(samples), 4),
            "min": round(min(samples), 4),
            "max": round(max(samples), 4),
            "samples": [round(s, 4) for s in samples],
            "ok": min(oks),
            "total": count,
            "targeted": max(totals),
            "states": states[-1],
            "general": memory(self.general.pid),
        }

    def profile(self, pyspy: Path, out_raw: Path, pings: int) -> dict[str, Any]:
        assert self.general is not None
        rec = subprocess.Popen(
            [
                str(pyspy),
                "record",
                "--pid",
                str(self.general.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(out_raw),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)
        took = [round(self.ping()[0], 3) for _ in range(pings)]
        time.sleep(0.5)
        rec.send_signal(2)
        try:
            _, err = rec.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            rec.kill()
            _, err = rec.communicate()
        if not out_raw.exists():
            return {"status": "failed", "reason": f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}"}
        return {"pings_while_profiled": took, **summarise_profile(out_raw)}

    def stop(self) -> None:
        for w in self.workers:
            with contextlib.suppress(OSError):
                assert w.stdin is not None
                w.stdin.close()
        self.procs.stop(self.workers, timeout=5)
        if self.general is not None:
            self.procs.stop([self.general], timeout=20)


# Coarse buckets for the profile, first match wins (substrings of the collapsed stacks).
BUCKETS = [
    ("Job.all_final: every result rescans all hosts of the job (O(n^2))", ("Job.all_final",)),
    ("job store: SQLAlchemy + SQLite (create_job, save_job_hosts)", ("sqlalchemy/", "troop/store/", "aiosqlite/")),
    ("API: request, JSON response", ("troop/general/api/", "starlette/", "uvicorn/", "json/")),
    ("job bookkeeping: submit/dispatch/ack/result/mark", ("troop/general/jobs.py", "troop/general/jobstate.py")),
    ("sealing/opening frames (AES-GCM, msgspec)", ("troop/protocol/crypto.py", "troop/protocol/channel.py")),
    ("scout connections: frame reads/writes, asyncio streams", ("troop/general/session.py", "asyncio/streams.py")),
]


def summarise_profile(
    raw: Path, top: int = 25, buckets: list[tuple[str, tuple[str, ...]]] | None = None
) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks -> where the samples are: per thread, per bucket (default
    BUCKETS), per Troop function (inclusive), per function of any module (self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    per_bucket: Counter[str] = Counter()
    buckets_of = BUCKETS if buckets is None else buckets
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        threads["sqlite thread (aiosqlite)" if "_connection_worker_thread" in stack else "event loop"] += count
        bucket = next((name for name, keys in buckets_of if any(k in stack for k in keys)), "other (idle-ish)")
        per_bucket[bucket] += count
        for f in {_short(f) for f in frames}:
            if "troop/" in f:
                inclusive[f] += count
        own[_short(frames[-1])] += count

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in c.most_common(top)]

    return {
        "samples": total,
        "threads_pct": pct(threads),
        "buckets_pct": pct(per_bucket),
        "inclusive_pct": pct(inclusive),
        "self_pct": pct(own),
        "raw": str(raw),
    }


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-3:]) if "troop" in parts else Path(path).name
    return f"{name} ({short})"


def run(counts: list[int], runs: int, nprocs: int, profile: bool, procs: Procs | None = None) -> dict[str, Any]:
    """The whole swarm figure; used by bench/run.py and by main()."""
    own = procs is None
    procs = procs or Procs()
    fd = raise_fd_limit()
    out: dict[str, Any] = {
        "fd_limit": fd,
        "worker_processes": nprocs,
        "key_bits": KEY_BITS,
        "keys": ensure_keys(max(counts)),
        "counts": {},
    }
    root = Path(tempfile.mkdtemp(prefix="troop-bench-swarm-"))
    register("dirs", str(root))
    bench = SwarmBench(root, procs, nprocs)
    try:
        bench.start()
        time.sleep(1)
        assert bench.general is not None
        out["general_idle"] = memory(bench.general.pid)
        for count in sorted(counts):
            log(f"swarm: connecting {count} scouts")
            grown = bench.grow_to(count)
            log(f"swarm: {grown['online']} online after {grown['seconds']} s; pinging")
            time.sleep(2)
            result = bench.measure(count, runs)
            result["connect"] = grown
            result["workers_rss_mb"] = [memory(w.pid)["rss_mb"] for w in bench.workers]
            out["counts"][str(count)] = result
            log(
                f"swarm: {count}: median {result['median']:.3f}s ok {result['ok']}/{count} "
                f"General RSS {result['general']['rss_mb']} MB"
            )
        if profile:
            pyspy = WORK / "tools-venv" / "bin" / "py-spy"
            if pyspy.exists():
                raw = WORK / f"profile-general-{max(counts)}.txt"
                raw.unlink(missing_ok=True)
                out["profile"] = bench.profile(pyspy, raw, pings=5)
            else:
                out["profile"] = {"status": "failed", "reason": "py-spy is not installed in bench/work/tools-venv"}
    finally:
        bench.stop()
        if own:
            procs.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--procs", type=int, default=1, help="swarm worker processes")
    parser.add_argument("--profile", action="store_true", help="py-spy the General at the largest count")
    parser.add_argument("--keys-only", action="store_true", help="only make the cached keys")
    parser.add_argument("--json", help="write the figures here (default bench/results/swarm-DATE.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--general", help=argparse.SUPPRESS)  # HOST:PORT[,HOST:PORT...]
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    if args.worker:
        raise_fd_limit()
        addresses = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in args.general.split(","))]
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(worker_main(*addresses[0], addresses[1:]))
        return 0
    if args.keys_only:
        print(json.dumps(ensure_keys(max(counts))))
        return 0
    result = run(counts, args.runs, args.procs, args.profile)
    out = Path(args.json) if args.json else RESULTS / f"swarm-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: {kk: v[kk] for kk in ("median", "min", "max", "ok", "total")} for k, v in result["counts"].items()},
            indent=2,
        )
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
