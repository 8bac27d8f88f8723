"""SaltStack on the bench's hosts, set up as the baseline (shared/reference/baseline-salt-ansible.md).

salt-master in the root namespace on the bridge address with ports of its own, auto_accept,
root_dir in the run's temp dir, default worker_threads and multiprocessing; one salt-minion
per host namespace. The CLI is `salt -c CONF '*' FUN --out=json --static -t 60`, which returns
as soon as every minion has answered. Push is `salt-cp`, read is `cmd.run 'cat F'`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from common import Procs, Sample, free_port, timed_cmd, wait_for
from hosts import Host, HostNet
from install import venv_bin


class SaltTool:
    name = "salt"

    def __init__(self, root: Path, net: HostNet, procs: Procs) -> None:
        self.root = root / "salt"
        self.net = net
        self.procs = procs
        self.pub_port = free_port(net.controller)
        self.ret_port = free_port(net.controller)
        self.master: Any = None
        self.minions: dict[str, Any] = {}
        self.conf = self.root / "master" / "conf"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def bin(self, name: str) -> str:
        return str(venv_bin("salt", name))

    def version(self) -> str:
        _, proc = timed_cmd([self.bin("salt"), "--version"], timeout=60)
        return proc.stdout.strip()

    # ------------------------------------------------------------ lifecycle
    def start(self, hosts: list[Host]) -> float:
        mroot = self.root / "master"
        (mroot / "srv").mkdir(parents=True, exist_ok=True)
        self.conf.mkdir(parents=True, exist_ok=True)
        (self.conf / "master").write_text(
            "\n".join(
                [
                    f"root_dir: {mroot}",
                    f"interface: {self.net.controller}",
                    f"publish_port: {self.pub_port}",
                    f"ret_port: {self.ret_port}",
                    "auto_accept: True",
                    "user: root",
                    f"file_roots:\n  base:\n    - {mroot / 'srv'}",
                    f"log_file: {mroot / 'master.log'}",
                    "log_level_logfile: warning",
                    "log_level: warning",
                    "",
                ]
            )
        )
        self.master = self.procs.start(
            "salt-master",
            [self.bin("salt-master"), "-c", str(self.conf), "-l", "warning"],
            log_path=self.root / "master.out",
            env=self.env,
        )
        return self.add_hosts(hosts)

    def add_hosts(self, hosts: list[Host]) -> float:
        start = time.monotonic()
        for h in hosts:
            root = self.root / "minions" / h.name
            conf = root / "conf"
            conf.mkdir(parents=True, exist_ok=True)
            (conf / "minion").write_text(
                "\n".join(
                    [
                        f"id: {h.name}",
                        f"root_dir: {root}",
                        f"master: {self.net.controller}",
                        f"master_port: {self.ret_port}",
                        f"publish_port: {self.pub_port}",
                        "user: root",
                        f"log_file: {root / 'minion.log'}",
                        "log_level_logfile: warning",
                        "log_level: warning",
                        "",
                    ]
                )
            )
            args = [self.bin("salt-minion"), "-c", str(conf), "-l", "warning"]
            self.minions[h.name] = self.procs.start(
                f"salt-minion {h.name}", self.net.wrap(h, args), log_path=root / "minion.out", env=self.env
            )
        want = len(self.minions)

        def all_answer() -> bool:
            if self.master.poll() is not None:
                raise RuntimeError(f"salt-master exited with {self.master.returncode}")
            return self.ping_count(timeout=10) >= want

        wait_for(all_answer, 600, f"{want} salt minions to answer test.ping", every=1.0)
        return time.monotonic() - start

    def ping_count(self, timeout: int = 10) -> int:
        _, proc = timed_cmd(self._salt("test.ping", timeout=timeout), env=self.env, timeout=timeout + 60)
        return sum(v is True for v in _json(proc.stdout).values())

    def stop(self) -> list[str]:
        # Minions first (they may ignore SIGTERM once the master is gone, as the baseline saw).
        killed = self.procs.stop(list(self.minions.values()), timeout=15)
        if self.master is not None:
            killed += self.procs.stop([self.master], timeout=20)
        self.minions, self.master = {}, None
        return killed

    # ------------------------------------------------------------ scenarios
    def _salt(self, fun: str, *args: str, timeout: int = 60) -> list[str]:
        return [self.bin("salt"), "-c", str(self.conf), "*", fun, *args, "--out=json", "--static", "-t", str(timeout)]

    def command(self, scenario: str, spec: dict[str, Any]) -> list[str]:
        if scenario == "ping":
            return self._salt("test.ping")
        if scenario == "cmd":
            return self._salt("cmd.run", " ".join(spec["cmd"]))
        if scenario.startswith("push"):
            return [
                self.bin("salt-cp"),
                "-c",
                str(self.conf),
                "*",
                spec["src"],
                spec["salt_dest"],
                "--out=json",
                "-t",
                "60",
            ]
        if scenario == "read":
            return self._salt("cmd.run", f"cat {spec['path']}")
        if scenario.startswith("script"):
            return self._salt("cmd.run", f"/bin/sh {spec['script']}")
        raise KeyError(scenario)

    def run(self, scenario: str, spec: dict[str, Any], total: int) -> Sample:
        secs, proc = timed_cmd(self.command(scenario, spec), env=self.env, timeout=180)
        out = _json(proc.stdout)
        if scenario == "ping":
            ok = sum(v is True for v in out.values())
        elif scenario.startswith("push"):
            ok = sum(isinstance(v, dict) and all(v.values()) and bool(v) for v in out.values())
        else:
            expect = spec["expect"][scenario]
            ok = sum(isinstance(v, str) and expect in v for v in out.values())
        error = "" if ok == total else f"rc={proc.returncode} {proc.stdout[-300:]} {proc.stderr[-300:]}"
        return Sample(secs, ok, total, error)

    def agent_pids(self) -> list[int]:
        return [p.pid for p in self.minions.values()]


def _json(text: str) -> dict[str, Any]:
    """salt --static prints one JSON object; salt-cp may print one per minion batch."""
    text = text.strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {}
    except ValueError:
        merged: dict[str, Any] = {}
        decoder = json.JSONDecoder()
        i = 0
        while i < len(text):
            try:
                obj, end = decoder.raw_decode(text, i)
            except ValueError:
                break
            if isinstance(obj, dict):
                merged.update(obj)
            i = end
            while i < len(text) and text[i].isspace():
                i += 1
        return merged
