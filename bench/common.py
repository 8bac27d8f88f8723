"""Shared helpers of the comparison bench: timing, memory, the process and cleanup registry.

Every process the bench starts and every temp dir it makes is written to bench/work/state/
as it happens, so bench/cleanup.sh can undo a run that died half-way (even a SIGKILLed one).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"
STATE = WORK / "state"
RESULTS = BENCH / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ registry for cleanup.sh


def register(kind: str, value: str) -> None:
    """Append one line to bench/work/state/KIND (pids, dirs)."""
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / kind).open("a") as fh:
        fh.write(value + "\n")


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: tells a process from a later one that reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return "0"
    return stat[stat.rindex(")") + 2 :].split()[19]


def register_pid(pid: int, name: str) -> None:
    register("pids", f"{pid} {start_time(pid)} {name}")


class Procs:
    """The processes this run started, stopped in reverse order (TERM, then KILL)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = log_path.open("ab")
        proc = subprocess.Popen(
            list(args), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        fh.close()
        register_pid(proc.pid, name)
        self.items.append((name, proc))
        return proc

    def stop(self, procs: Sequence[subprocess.Popen[bytes]] | None = None, timeout: float = 10.0) -> list[str]:
        """Stop the given processes (default: all), whole process groups. Returns what needed SIGKILL."""
        chosen = [(n, p) for n, p in self.items if procs is None or p in procs]
        killed: list[str] = []
        for _, proc in reversed(chosen):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in reversed(chosen):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(name)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # children left in the group (salt's job processes, sshd sessions)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.items = [(n, p) for n, p in self.items if (n, p) not in chosen]
        return killed


# ------------------------------------------------------------------ timing


@dataclass
class Sample:
    seconds: float
    ok: int
    total: int
    error: str = ""


def measure(
    run: Callable[[], Sample], runs: int, warmup: int = 1, before: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Warm-up(s) not counted, then `runs` timed runs. `before` runs outside the timing."""
    samples: list[Sample] = []
    for i in range(warmup + runs):
        if before is not None:
            before()
        sample = run()
        if i >= warmup:
            samples.append(sample)
    secs = [s.seconds for s in samples]
    worst = min(samples, key=lambda s: s.ok)
    out: dict[str, Any] = {
        "median": round(statistics.median(secs), 4),
        "min": round(min(secs), 4),
        "max": round(max(secs), 4),
        "ok": worst.ok,  # hosts that succeeded in the worst run
        "total": worst.total,
        "runs": len(samples),
        "samples": [round(s, 4) for s in secs],
        "ok_per_run": [s.ok for s in samples],
        "status": "ok" if worst.ok == worst.total else "partial",
    }
    errors = [s.error for s in samples if s.error]
    if errors:
        out["errors"] = errors[:3]
    return out


def failed(reason: str, total: int = 0) -> dict[str, Any]:
    return {"median": None, "min": None, "max": None, "ok": 0, "total": total, "status": "failed", "reason": reason}


def timed_cmd(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        proc = subprocess.CompletedProcess(list(args), -9, out, f"timed out after {timeout}s")
    return time.perf_counter() - start, proc


# ------------------------------------------------------------------ memory


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    kids = kids if kids is not None else children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def memory(pid: int, kids: dict[int, list[int]] | None = None) -> dict[str, Any]:
    """VmRSS and PSS (smaps_rollup) of a process and all its descendants, in MB."""
    pids = [p for p in tree(pid, kids) if _status_kb(p, "VmRSS") > 0]
    return {
        "rss_mb": round(sum(_status_kb(p, "VmRSS") for p in pids) / 1024, 1),
        "pss_mb": round(sum(_pss_kb(p) for p in pids) / 1024, 1),
        "main_rss_mb": round(_status_kb(pid, "VmRSS") / 1024, 1),
        "processes": len(pids),
    }


def rss_mb(pid: int) -> float:
    return round(_status_kb(pid, "VmRSS") / 1024, 1)


def memory_summary(pids: Sequence[int]) -> dict[str, Any]:
    """Median (and range) over several like processes (scouts, minions), each measured as a tree."""
    kids = children_map()
    each = [memory(p, kids) for p in pids]
    each = [m for m in each if m["rss_mb"] > 0]
    if not each:
        return {"status": "failed", "reason": "no live process to measure"}
    rss = [m["rss_mb"] for m in each]
    pss = [m["pss_mb"] for m in each]
    return {
        "rss_mb": round(statistics.median(rss), 1),
        "rss_min_mb": min(rss),
        "rss_max_mb": max(rss),
        "pss_mb": round(statistics.median(pss), 1),
        "main_rss_mb": round(statistics.median(m["main_rss_mb"] for m in each), 1),
        "processes_each": each[0]["processes"],
        "measured": len(each),
    }


# ------------------------------------------------------------------ network


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def api_json(port: int, token: str, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
    """One call to a General's API on 127.0.0.1:`port`, as the admin; the decoded JSON answer."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())
