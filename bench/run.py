"""`make bench`: Troop vs SaltStack vs Ansible on the same hosts, side by side, in one run.

    .venv/bin/python bench/run.py                       # everything (about 30 minutes)
    .venv/bin/python bench/run.py --scenario ping --tool troop
    make bench SCENARIOS=ping,cmd TOOLS=troop,salt RUNS=5

Hosts are network namespaces (bench/hosts.py) holding each tool's agent: troop-scout,
salt-minion, or an sshd for Ansible; the General, salt-master and ansible run in the root
namespace on the bridge address. The tools take turns, never at the same time: each starts
its agents on 15 hosts, runs the 15-host scenarios, adds 30 hosts for script_5s_45, stops.
Every figure is the wall time of the whole command from the command line (median, min and
max of --runs runs after one warm-up) and the hosts that succeeded in the worst run;
Troop is also timed at its API (POST /api/v1/jobs?wait=60).

Then the memory figures (VmRSS and PSS of each process tree) and the swarm (bench/swarm.py:
1,000 and 10,000 scouts on one General). Writes bench/results/DATE.json, DATE.md and DATE.png.
A step that fails is recorded as failed with its reason, and the rest still runs. Whatever
happens, every namespace, process and temp dir is removed at the end (bench/cleanup.sh does
the same for a run that was killed).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import install
from common import (
    RESULTS,
    STATE,
    Procs,
    failed,
    free_port,
    log,
    measure,
    memory,
    memory_summary,
    port_open,
    register,
    timed_cmd,
    wait_for,
)
from hosts import HostNet, destroy_all

SCENARIOS = ["ping", "cmd", "push_small", "push_30k", "read", "script_5s", "script_5s_45"]
SHORT = ["ping", "cmd", "push_small", "push_30k", "read"]
TOOLS = ["troop", "salt", "ansible"]
SMALL, BIG = 15, 45


def scenario_hosts(name: str) -> int:
    return BIG if name.endswith("_45") else SMALL


# ------------------------------------------------------------------ inputs


def make_inputs(root: Path) -> dict[str, Any]:
    files, out = root / "files", root / "out"
    files.mkdir()
    out.mkdir()
    small = files / "small.txt"
    small.write_bytes(b"hello from troop 123\n")  # 21 bytes, as in the seed's table
    assert small.stat().st_size == 21
    # 30 KB of text (random, base64 lines): salt-cp is meant for text files and fails on binary ones.
    mid = files / "30k.txt"
    text = base64.encodebytes(os.urandom(30 * 1024))[: 30 * 1024 - 1] + b"\n"
    mid.write_bytes(text)
    assert mid.stat().st_size == 30 * 1024
    read = files / "read.txt"
    read.write_text("troop bench read 42\n")
    script = files / "sleep5.sh"
    script.write_text("#!/bin/sh\nsleep 5\necho slept\n")
    script.chmod(0o755)
    base: dict[str, Any] = {
        "cmd": ["ip", "addr"],
        "path": str(read),
        "script": str(script),
        "expect": {"cmd": "inet ", "read": "troop bench read 42", "script_5s": "slept", "script_5s_45": "slept"},
    }
    specs: dict[str, dict[str, Any]] = {}
    for name in SCENARIOS:
        spec = dict(base)
        if name.startswith("push"):
            src = small if name == "push_small" else mid
            spec.update(
                src=str(src),
                dest=str(out / f"troop-{name}"),
                salt_dest=str(out / f"salt-{name}"),
                ansible_dest=str(out / f"ansible-{name}-{{{{ inventory_hostname }}}}"),
                clean=str(out),
            )
        specs[name] = spec
    return specs


def clean_outputs(spec: dict[str, Any]) -> None:
    """Delete pushed files before each run (outside the timing), so every run transfers."""
    d = spec.get("clean")
    if d:
        for p in Path(d).iterdir():
            p.unlink(missing_ok=True)


# ------------------------------------------------------------------ machine


def machine_info(net: HostNet) -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    os_name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": ssh,
        "network": net.network,
        "controller_address": net.controller,
        "load_at_start": os.getloadavg(),
    }


# ------------------------------------------------------------------ one tool


def make_tool(name: str, root: Path, net: HostNet, procs: Procs) -> Any:
    if name == "troop":
        from tool_troop import TroopTool

        return TroopTool(root, net, procs)
    if name == "salt":
        from tool_salt import SaltTool

        return SaltTool(root, net, procs)
    from tool_ansible import AnsibleTool

    return AnsibleTool(root, net, procs)


def run_tool(
    name: str,
    scenarios: list[str],
    root: Path,
    net: HostNet,
    procs: Procs,
    specs: dict[str, Any],
    args: Any,
    out: dict[str, Any],
) -> None:
    """Fill out["scenarios"][S][name] (and troop_api) and out["tools"][name]; never raises."""
    res = out["scenarios"]
    info: dict[str, Any] = out["tools"].setdefault(name, {})
    setup = out["setup"].get({"salt": "salt", "ansible": "ansible"}.get(name, ""), {"ok": True})
    if name == "ansible" and not out["setup"].get("sshd", {"ok": True})["ok"]:
        setup = out["setup"]["sshd"]
    if not setup["ok"]:
        for s in scenarios:
            res[s][name] = failed(f"setup failed: {setup['reason']}", scenario_hosts(s))
        info["status"] = "failed"
        info["reason"] = setup["reason"]
        return
    tool = make_tool(name, root, net, procs)
    small = [s for s in scenarios if scenario_hosts(s) == SMALL]
    big = [s for s in scenarios if scenario_hosts(s) == BIG]
    current = "start"
    try:
        info["version"] = tool.version()
        log(f"{name}: starting agents on {SMALL} hosts")
        info["start_seconds_15"] = round(tool.start(net.hosts[:SMALL]), 1)
        log(f"{name}: all {SMALL} agents answer after {info['start_seconds_15']} s")
        time.sleep(5)  # idle
        idle_memory(name, tool, out)
        for s in small + big:
            current = s
            n = scenario_hosts(s)
            if n == BIG and len(tool.agent_pids()) < BIG:
                log(f"{name}: adding {BIG - SMALL} hosts")
                info["start_seconds_30_more"] = round(tool.add_hosts(net.hosts[SMALL:BIG]), 1)
                time.sleep(3)
                if name == "salt":
                    out["memory"]["salt_master_45_minions"] = memory(tool.master.pid)
            spec = specs[s]
            log(f"{name}: {s} ({n} hosts) x {args.runs} after {args.warmup} warm-up")
            res[s][name] = measure(
                lambda s=s, spec=spec, n=n: tool.run(s, spec, n),
                args.runs,
                args.warmup,
                lambda spec=spec: clean_outputs(spec),
            )
            res[s][name]["command"] = _cmdline(tool, s, spec, n)
            res[s][name]["load_after"] = round(os.getloadavg()[0], 2)  # was the machine busy?
            _report(name, s, res[s][name])
            if name == "troop" and not args.no_api:
                res[s]["troop_api"] = measure(
                    lambda s=s, spec=spec, n=n: tool.run_api(s, spec, n),
                    args.runs,
                    args.warmup,
                    lambda spec=spec: clean_outputs(spec),
                )
                res[s]["troop_api"]["command"] = "POST /api/v1/jobs?wait=60 " + json.dumps(tool.api_body(s, spec))
                _report("troop_api", s, res[s]["troop_api"])
        info["status"] = "ok"
    except Exception as exc:  # one tool's failure must not stop the others
        reason = f"{type(exc).__name__} during {current}: {exc}"
        log(f"{name}: FAILED: {reason}")
        traceback.print_exc()
        info["status"], info["reason"] = "failed", reason
        for s in scenarios:
            if name not in res[s]:
                res[s][name] = failed(reason, scenario_hosts(s))
    finally:
        log(f"{name}: stopping")
        killed = tool.stop()
        info["needed_sigkill"] = killed


def _cmdline(tool: Any, s: str, spec: dict[str, Any], n: int) -> str:
    try:
        argv = tool.command(s, spec, n) if tool.name == "ansible" else tool.command(s, spec)
    except Exception:
        return ""
    if tool.name == "troop":
        cut = argv.index("--") if "--" in argv else len(argv)
        argv = ["troop", *argv[:cut], "--json", *argv[cut:]]
    return " ".join(a if " " not in a and a != "*" else f"'{a}'" for a in argv)


def _report(name: str, s: str, r: dict[str, Any]) -> None:
    log(f"  {name:10s} {s:13s} median {r['median']:.3f}s ({r['min']:.3f}-{r['max']:.3f}) {r['ok']}/{r['total']}")


def idle_memory(name: str, tool: Any, out: dict[str, Any]) -> None:
    mem = out["memory"]
    if name == "troop":
        mem["scout"] = memory_summary(tool.agent_pids())
        mem["general_with_15_scouts"] = memory(tool.general.pid)
    elif name == "salt":
        mem["salt_minion"] = memory_summary(tool.agent_pids())
        mem["salt_master_15_minions"] = memory(tool.master.pid)


def filemanager_memory(root: Path, procs: Procs) -> dict[str, Any]:
    """A standalone troop-filemanager, idle, measured as the others."""
    exe = str(Path(sys.executable).with_name("troop-filemanager"))
    port = free_port()
    proc = procs.start(
        "troop-filemanager",
        [exe, "--data-dir", str(root / "filemanager"), "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        log_path=root / "filemanager.log",
    )
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 30, "the FileManager")
        time.sleep(3)
        return memory(proc.pid)
    finally:
        procs.stop([proc])


# ------------------------------------------------------------------ targets


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    res, mem = out["scenarios"], out["memory"]
    found: list[dict[str, Any]] = []

    def med(s: str, tool: str) -> float | None:
        r = res.get(s, {}).get(tool)
        return r.get("median") if r and r.get("status") == "ok" else None  # every host, every run

    for s in SHORT:
        t = med(s, "troop")
        for other, factor in (("salt", 5), ("ansible", 20)):
            o = med(s, other)
            if t is None or o is None:
                if s in res:
                    found.append(
                        {
                            "target": f"{s}: Troop >= {factor}x faster than {other}",
                            "met": None,
                            "value": "not measured, or some host failed",
                        }
                    )
                continue
            ratio = o / t
            found.append(
                {
                    "target": f"{s}: Troop >= {factor}x faster than {other}",
                    "met": ratio >= factor,
                    "value": f"{ratio:.1f}x ({t:.3f} s vs {o:.3f} s)",
                }
            )
    for s, limit in (("script_5s", 5.10), ("script_5s_45", 5.15)):
        t = med(s, "troop")
        if s in res:
            found.append(
                {
                    "target": f"{s}: Troop <= {limit:.2f} s",
                    "met": None if t is None else t <= limit,
                    "value": "not measured, or some host failed"
                    if t is None
                    else f"CLI {t:.3f} s (API {fmt_med(res[s].get('troop_api'))})",
                }
            )
    scout, minion = mem.get("scout", {}), mem.get("salt_minion", {})
    if "rss_mb" in scout:
        found.append(
            {"target": "scout idle RSS <= 30 MB", "met": scout["rss_mb"] <= 30, "value": f"{scout['rss_mb']} MB"}
        )
        if "rss_mb" in minion:
            found.append(
                {
                    "target": "scout idle RSS <= 1/3 of a salt-minion's",
                    "met": scout["rss_mb"] * 3 <= minion["rss_mb"],
                    "value": f"{scout['rss_mb']} MB vs {minion['rss_mb']} MB "
                    f"({scout['rss_mb'] / minion['rss_mb']:.2f})",
                }
            )
    swarm = out.get("swarm", {}).get("counts", {})
    for count, limit in (("1000", 1.0), ("10000", 5.0)):
        r = swarm.get(count)
        if r:
            all_back = r["ok"] == r["total"]
            found.append(
                {
                    "target": f"ping {int(count):,} scouts <= {limit:g} s, 100% returned",
                    "met": r["median"] <= limit and all_back,
                    "value": f"{r['median']:.3f} s, {r['ok']}/{r['total']}",
                }
            )
    return found


# ------------------------------------------------------------------ output


def fmt(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    if r.get("status") == "failed":
        return f"failed: {r.get('reason', '')[:80]}"
    rerun = " (rerun)" if r.get("rerun") else ""
    return f"{r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f}) {r['ok']}/{r['total']}{rerun}"


def ratio(res: dict[str, Any], s: str, tool: str) -> str:
    t, o = res[s].get("troop"), res[s].get(tool)
    if not t or not o or t.get("status") != "ok" or o.get("status") != "ok":
        return "-"  # not when some host failed: a failed run is often a fast one
    return f"{o['median'] / t['median']:.1f}x"


def render_md(out: dict[str, Any], png: str | None) -> str:
    m = out["machine"]
    res = out["scenarios"]
    versions = ", ".join(f"{k} {v.get('version', '?')}" for k, v in out["tools"].items())
    lines = [
        f"# Troop vs SaltStack vs Ansible, {out['date']}",
        "",
        f"{m['cpus']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, {m['os']}, kernel {m['kernel']}, Python {m['python']}; "
        f"{versions}.",
        f"Network: {m['network']}. Load average at start {fmt_load(m.get('load_at_start'))}, "
        f"at end {fmt_load(m.get('load_at_end'))}.",
        "",
        "Wall seconds of the whole command: median (min-max) over "
        f"{out['runs']} runs after {out['warmup']} warm-up, and hosts that succeeded in the worst run.",
        "",
        "| scenario | Troop CLI | Troop API | Salt CLI | Ansible | Salt / Troop | Ansible / Troop |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in res:
        r = res[s]
        lines.append(
            f"| {s} | {fmt(r.get('troop'))} | {fmt(r.get('troop_api'))} | {fmt(r.get('salt'))} | "
            f"{fmt(r.get('ansible'))} | {ratio(res, s, 'salt')} | {ratio(res, s, 'ansible')} |"
        )
    lines += ["", "Commands (Troop's with `--json`; push targets deleted before every run, outside the timing):", ""]
    for s in res:
        for tool in ("troop", "salt", "ansible"):
            c = res[s].get(tool, {}).get("command")
            if c:
                lines.append(f"- {s} / {tool}: `{c}`")
    mem = out.get("memory", {})
    if mem:
        lines += [
            "",
            "## Idle memory (VmRSS and PSS summed over each process tree)",
            "",
            "| process | RSS MB | PSS MB | processes | note |",
            "|---|---|---|---|---|",
        ]
        for key, label in (
            ("scout", "troop-scout (median of 15)"),
            ("general_with_15_scouts", "troop-general with 15 scouts (FileManager in-process)"),
            ("filemanager", "troop-filemanager standalone"),
            ("salt_minion", "salt-minion (median of 15)"),
            ("salt_master_15_minions", "salt-master with 15 minions"),
            ("salt_master_45_minions", "salt-master with 45 minions"),
        ):
            v = mem.get(key)
            if not v:
                continue
            if v.get("status") == "failed":
                lines.append(f"| {label} | failed: {v.get('reason')} | | | |")
                continue
            procs_n = v.get("processes_each", v.get("processes"))
            note = f"main process {v.get('main_rss_mb')} MB"
            if "rss_min_mb" in v:
                note += f"; range {v['rss_min_mb']}-{v['rss_max_mb']} MB"
            lines.append(f"| {label} | {v['rss_mb']} | {v['pss_mb']} | {procs_n} | {note} |")
    swarm = out.get("swarm", {})
    if swarm.get("counts"):
        lines += [
            "",
            "## Scale: one General, many scouts (bench/swarm.py)",
            "",
            "| scouts | ping median (min-max) | returned | General RSS / PSS MB | connect time |",
            "|---|---|---|---|---|",
        ]
        for count, r in swarm["counts"].items():
            g = r["general"]
            lines.append(
                f"| {int(count):,} | {r['median']:.3f} s ({r['min']:.3f}-{r['max']:.3f}) | {r['ok']}/{r['total']} | "
                f"{g['rss_mb']} / {g['pss_mb']} | {r['connect']['seconds']} s ({r['connect']['per_second']}/s) |"
            )
        prof = swarm.get("profile")
        if prof and prof.get("self_pct"):
            threads = ", ".join(f"{name} {p}%" for name, p in prof.get("threads_pct", []))
            lines += [
                "",
                f"Where the General's time goes at {max(map(int, swarm['counts'])):,} scouts "
                f"(py-spy, {prof['samples']} samples over {len(prof['pings_while_profiled'])} extra pings "
                f"taking {', '.join(f'{x:.2f}' for x in prof['pings_while_profiled'])} s under the profiler; "
                f"{threads}):",
                "",
                "| part of the General | % of samples |",
                "|---|---|",
            ]
            lines += [f"| {name} | {p} |" for name, p in prof.get("buckets_pct", [])]
            lines += [
                "",
                "| Troop function (inclusive: on the stack) | % | any function (self: running) | % |",
                "|---|---|---|---|",
            ]
            for (a, pa), (b, pb) in zip(prof["inclusive_pct"][:15], prof["self_pct"][:15], strict=False):
                lines.append(f"| `{a}` | {pa} | `{b}` | {pb} |")
        elif prof:
            lines += ["", f"Profile: failed: {prof.get('reason')}"]
    elif swarm.get("status") == "failed":
        lines += ["", f"Swarm: failed: {swarm.get('reason')}"]
    tg = out.get("targets", [])
    if tg:
        lines += ["", "## Targets", "", "| target | met | value |", "|---|---|---|"]
        for t in tg:
            met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
            lines.append(f"| {t['target']} | {met} | {t['value']} |")
    for r in out.get("reruns", []):
        lines += ["", f"Rerun {r['date']} (`{r['command']}`) replaced: {', '.join(r['replaced']) or 'nothing'}."]
    failures = out.get("failures", [])
    if failures:
        lines += ["", "## Failed steps", ""] + [f"- {f}" for f in failures]
    if png:
        lines += ["", f"![chart]({png})"]
    return "\n".join(lines) + "\n"


def fmt_med(r: dict[str, Any] | None) -> str:
    return f"{r['median']:.3f} s" if r and r.get("median") is not None else "-"


def fmt_load(load: Any) -> str:
    return "/".join(f"{x:.2f}" for x in load) if load else "?"


def chart(json_path: Path, png: Path) -> str | None:
    py = install.venv_bin("tools", "python")
    if not py.exists():
        return "matplotlib is not installed (bench/work/tools-venv)"
    _, proc = timed_cmd([str(py), str(Path(__file__).with_name("chart.py")), str(json_path), str(png)], timeout=120)
    return None if proc.returncode == 0 else f"chart.py failed: {proc.stderr[-400:]}"


# ------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scenario",
        "--scenarios",
        dest="scenarios",
        action="append",
        help=f"comma-separated, repeatable; default all: {','.join(SCENARIOS)}",
    )
    p.add_argument("--tool", "--tools", dest="tools", action="append", help="troop,salt,ansible (default all)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-api", action="store_true", help="skip Troop's API timings")
    p.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the FileManager memory and the swarm (default: on, off when --scenario or --tool picks a subset)",
    )
    p.add_argument("--swarm", default="1000,10000", help="swarm sizes ('' to skip)")
    p.add_argument("--swarm-procs", type=int, default=1)
    p.add_argument("--no-profile", action="store_true", help="do not py-spy the General during the swarm")
    p.add_argument("--loopback", action="store_true", help="do not use namespaces (127.0.0.x hosts)")
    p.add_argument("--no-install", action="store_true", help="do not install anything (report what is missing)")
    p.add_argument("--name", help="results file name (default: the UTC date)")
    p.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a subset run (--scenario/--tool) updates its figures in an existing results file of the same name",
    )
    args = p.parse_args()
    scenarios = _pick(args.scenarios, SCENARIOS, "scenario")
    tools = _pick(args.tools, TOOLS, "tool")
    if args.scale is None:
        args.scale = not (args.scenarios or args.tools)
    if args.runs < 1:
        p.error("--runs must be at least 1")

    if os.geteuid() != 0:
        print("bench/run.py needs root (network namespaces, apt-get, sshd)", file=sys.stderr)
        return 2
    # SIGTERM/SIGHUP go through the finally blocks below, like Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    started = time.monotonic()
    subprocess.run(
        ["bash", str(Path(__file__).with_name("cleanup.sh")), "--quiet"], check=False
    )  # a dead run's leftovers
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "runs": args.runs,
        "warmup": args.warmup,
        "hosts": {"short": SMALL, "script_5s_45": BIG},
        "setup": {},
        "tools": {},
        "scenarios": {s: {} for s in scenarios},
        "memory": {},
        "failures": [],
    }
    procs = Procs()
    net: HostNet | None = None
    root = Path(tempfile.mkdtemp(prefix="troop-bench-"))
    register("dirs", str(root))
    interrupted = False
    try:
        if args.no_install:
            out["setup"] = {"note": {"ok": True, "reason": "--no-install"}}
        else:
            wanted = {"sshd", "tools"} | {t for t in tools if t in ("salt", "ansible")}
            if "ansible" not in tools:
                wanted.discard("sshd")
            out["setup"] = install.ensure(wanted, log)
        for step, st in out["setup"].items():
            if not st["ok"]:
                out["failures"].append(f"setup {step}: {st['reason']}")
        need = max(scenario_hosts(s) for s in scenarios)
        net = HostNet.create(need, force_loopback="--loopback given" if args.loopback else "")
        log(f"hosts: {need}, {net.network}")
        if not net.namespaces:
            out["failures"].append(f"network: {net.network}")
        out["machine"] = machine_info(net)
        specs = make_inputs(root)
        for tool in tools:
            run_tool(tool, scenarios, root, net, procs, specs, args, out)
            if out["tools"][tool].get("status") == "failed":
                out["failures"].append(f"{tool}: {out['tools'][tool].get('reason')}")
        if net is not None:
            net.destroy()
            net = None
        if args.scale:
            try:
                out["memory"]["filemanager"] = filemanager_memory(root, procs)
            except Exception as exc:
                out["memory"]["filemanager"] = {"status": "failed", "reason": str(exc)}
                out["failures"].append(f"filemanager memory: {exc}")
            counts = [int(c) for c in args.swarm.split(",") if c.strip()]
            if counts:
                import swarm

                try:
                    out["swarm"] = swarm.run(counts, args.runs, args.swarm_procs, not args.no_profile, procs)
                except Exception as exc:
                    traceback.print_exc()
                    out["swarm"] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                    out["failures"].append(f"swarm: {exc}")
    except KeyboardInterrupt:
        interrupted = True
        out["failures"].append("interrupted")
        log("interrupted: cleaning up")
    finally:
        procs.stop()
        if net is not None:
            net.destroy()
        destroy_all()
        shutil.rmtree(root, ignore_errors=True)
        for f in ("pids", "dirs"):
            (STATE / f).unlink(missing_ok=True)
    out.setdefault("machine", {"network": "not set up"})
    out["machine"]["load_at_end"] = os.getloadavg()
    out["seconds"] = round(time.monotonic() - started)
    RESULTS.mkdir(exist_ok=True)
    name = args.name or datetime.now(UTC).strftime("%Y-%m-%d")
    jpath, mpath, ppath = RESULTS / f"{name}.json", RESULTS / f"{name}.md", RESULTS / f"{name}.png"
    if (args.scenarios or args.tools) and args.merge and jpath.exists():
        out = merge(json.loads(jpath.read_text()), out)
        log(f"merged into the earlier {jpath.name} (pass --no-merge or --name to keep it apart)")
    out["targets"] = targets(out)
    jpath.write_text(json.dumps(out, indent=2) + "\n")
    problem = chart(jpath, ppath)
    if problem:
        out["failures"].append(f"chart: {problem}")
        jpath.write_text(json.dumps(out, indent=2) + "\n")
    mpath.write_text(render_md(out, None if problem else ppath.name))
    print(mpath.read_text())
    log(f"written {jpath}, {mpath}" + ("" if problem else f", {ppath}") + f" in {out['seconds']} s")
    return 130 if interrupted else 0


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A subset rerun replaces its own figures in the day's results and keeps the others."""
    replaced = []
    for s in SCENARIOS:
        for tool, fig in new["scenarios"].get(s, {}).items():
            old["scenarios"].setdefault(s, {})[tool] = {**fig, "rerun": new["date"]}
            replaced.append(f"{s}/{tool}")
    old["scenarios"] = {s: old["scenarios"][s] for s in SCENARIOS if s in old["scenarios"]}
    for key, value in new.get("memory", {}).items():
        old.setdefault("memory", {})[key] = {**value, "rerun": new["date"]}
    for tool, info in new.get("tools", {}).items():
        old.setdefault("tools", {}).setdefault(tool, {}).update(info)
    if "swarm" in new:
        old["swarm"] = new["swarm"]
    old.setdefault("failures", []).extend(f"rerun {new['date']}: {f}" for f in new.get("failures", []))
    old.setdefault("reruns", []).append(
        {"date": new["date"], "command": new["command"], "replaced": replaced, "machine": new.get("machine", {})}
    )
    return old


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _pick(given: list[str] | None, allowed: list[str], what: str) -> list[str]:
    if not given:
        return list(allowed)
    chosen = [x.strip() for g in given for x in g.split(",") if x.strip()]
    bad = [x for x in chosen if x not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return [x for x in allowed if x in chosen]


if __name__ == "__main__":
    sys.exit(main())
