"""Install what the comparison bench needs, each step on its own, into bench/work/ (git-ignored).

    python bench/install.py [--only salt,ansible,tools,sshd]

* bench/work/salt-venv     salt==3008.4 (a source build: about 2 minutes)
* bench/work/ansible-venv  ansible-core<2.20 (2.20+ needs Python 3.12)
* bench/work/tools-venv    matplotlib (the chart) and py-spy (profiling): never the project's deps
* openssh-server           from apt, only if /usr/sbin/sshd is missing; the package's own
                           service is kept from starting (we run private sshds only)

A step that fails is returned as {"ok": False, "reason": ...}; the others still run. Every
venv has a stamp file, so a rerun costs nothing once all is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"
LOGS = WORK / "logs"
PYTHON = os.environ.get("BENCH_PYTHON", "python3")

VENVS: dict[str, tuple[str, list[str], str]] = {
    # name: (directory, pip requirements, a binary that proves it works)
    "salt": ("salt-venv", ["salt==3008.4"], "salt-master"),
    "ansible": ("ansible-venv", ["ansible-core<2.20"], "ansible"),
    "tools": ("tools-venv", ["matplotlib", "py-spy"], "py-spy"),
}


def venv_dir(name: str) -> Path:
    return WORK / VENVS[name][0]


def venv_bin(name: str, program: str) -> Path:
    return venv_dir(name) / "bin" / program


def _run(args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"\n$ {' '.join(args)}\n".encode())
        fh.flush()
        proc = subprocess.run(
            args, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{args[0]} {' '.join(args[1:3])} exited {proc.returncode}: ...{tail[-600:]}")


def ensure_venv(name: str) -> dict[str, Any]:
    directory, reqs, probe = VENVS[name]
    path = WORK / directory
    stamp = path / ".bench-installed"
    wanted = json.dumps(reqs)
    if stamp.exists() and stamp.read_text() == wanted and (path / "bin" / probe).exists():
        return {"ok": True, "cached": True, "path": str(path)}
    log = LOGS / f"setup-{name}.log"
    try:
        if not (path / "bin" / "python").exists():
            _run([PYTHON, "-m", "venv", str(path)], log)
        _run([str(path / "bin" / "pip"), "install", "-q", "--upgrade", "pip"], log)
        _run([str(path / "bin" / "pip"), "install", "-q", *reqs], log)
        if not (path / "bin" / probe).exists():
            raise RuntimeError(f"{probe} missing after install")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "reason": f"pip install {' '.join(reqs)} failed: {exc}", "log": str(log)}
    stamp.write_text(wanted)
    return {"ok": True, "cached": False, "path": str(path)}


def ensure_sshd() -> dict[str, Any]:
    if Path("/usr/sbin/sshd").exists():
        return {"ok": True, "cached": True}
    if shutil.which("apt-get") is None:
        return {"ok": False, "reason": "no /usr/sbin/sshd and no apt-get to install openssh-server"}
    log = LOGS / "setup-sshd.log"
    # Keep the package from starting its own sshd on port 22 (Debian's policy-rc.d hook).
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        if ours:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            _run(["apt-get", "install", "-y", "-q", "openssh-server"], log, env)
        except RuntimeError:
            _run(["apt-get", "update", "-q"], log, env)
            _run(["apt-get", "install", "-y", "-q", "openssh-server"], log, env)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "reason": f"apt-get install openssh-server failed: {exc}", "log": str(log)}
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    if not Path("/usr/sbin/sshd").exists():
        return {"ok": False, "reason": "openssh-server installed but /usr/sbin/sshd is missing"}
    return {"ok": True, "cached": False}


def ensure(only: set[str] | None = None, log: Any = print) -> dict[str, dict[str, Any]]:
    """Run each wanted step; never raises for a failed step."""
    status: dict[str, dict[str, Any]] = {}
    steps = [("sshd", ensure_sshd), *[(n, lambda n=n: ensure_venv(n)) for n in VENVS]]
    for name, step in steps:
        if only is not None and name not in only:
            continue
        log(f"setup: {name} ...")
        status[name] = step()
        log(f"setup: {name}: {'ok' if status[name]['ok'] else 'FAILED: ' + status[name]['reason']}")
    return status


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated steps: sshd,salt,ansible,tools")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    status = ensure(only)
    print(json.dumps(status, indent=2))
    return 0 if all(s["ok"] for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
