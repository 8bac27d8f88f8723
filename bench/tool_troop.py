"""Troop on the bench's hosts: a General in the root namespace, one troop-scout per host namespace."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import Procs, Sample, free_port, port_open, wait_for
from hosts import Host, HostNet


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class TroopTool:
    name = "troop"

    def __init__(self, root: Path, net: HostNet, procs: Procs) -> None:
        self.root = root / "troop"
        self.net = net
        self.procs = procs
        self.api_port = free_port()
        self.scout_port = free_port(net.controller)
        self.files_port = free_port(net.controller)
        self.general: Any = None
        self.scouts: dict[str, Any] = {}
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def token(self) -> str:
        return (self.root / "general" / "admin.token").read_text().strip()

    def version(self) -> str:
        from troop import __version__

        return __version__

    # ------------------------------------------------------------ lifecycle
    def start(self, hosts: list[Host]) -> float:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "TROOP_FILEMANAGER_LISTEN": f"{self.net.controller}:{self.files_port}"}
        self.general = self.procs.start(
            "troop-general",
            [
                _bin("troop-general"),
                "--data-dir",
                str(self.root / "general"),
                "--api-listen",
                f"127.0.0.1:{self.api_port}",
                "--scout-listen",
                f"{self.net.controller}:{self.scout_port}",
                "--auto-accept",
                "--log-level",
                "warning",
            ],
            log_path=self.root / "general.log",
            env=env,
        )
        wait_for(self._healthy, 60, "the General to answer")
        return self.add_hosts(hosts)

    def add_hosts(self, hosts: list[Host]) -> float:
        start = time.monotonic()
        for h in hosts:
            args = [
                _bin("troop-scout"),
                "--general",
                f"{self.net.controller}:{self.scout_port}",
                "--hostname",
                h.name,
                "--data-dir",
                str(self.root / "scouts" / h.name),
                "--log-level",
                "warning",
            ]
            self.scouts[h.name] = self.procs.start(
                f"troop-scout {h.name}",
                self.net.wrap(h, args),
                log_path=self.root / f"scout-{h.name}.log",
                env=self.env,
            )
        names = set(self.scouts)
        wait_for(lambda: names <= self._online(), 120, f"{len(names)} scouts to come online", every=0.2)
        return time.monotonic() - start

    def stop(self) -> list[str]:
        killed = self.procs.stop(list(self.scouts.values()))
        if self.general is not None:
            killed += self.procs.stop([self.general], timeout=20)
        self.scouts, self.general = {}, None
        return killed

    def _healthy(self) -> bool:
        if self.general is not None and self.general.poll() is not None:
            raise RuntimeError(f"troop-general exited with {self.general.returncode}")
        return port_open("127.0.0.1", self.api_port) and (self.root / "general" / "admin.token").exists()

    def _online(self) -> set[str]:
        return {h["hostname"] for h in self.api("GET", "/api/v1/hosts")["hosts"] if h["online"]}

    def api(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    # ------------------------------------------------------------ scenarios
    def cli(self, args: list[str], total: int, timeout: float = 120) -> Sample:
        from common import timed_cmd

        env = {**self.env, "TROOP_URL": self.url, "TROOP_TOKEN": self.token, "NO_COLOR": "1"}
        cut = args.index("--") if "--" in args else len(args)  # options go before the remote program
        argv = [_bin("troop"), *args[:cut], "--json", *args[cut:]]
        secs, proc = timed_cmd(argv, env=env, timeout=timeout)
        try:
            job = json.loads(proc.stdout or "{}")
            ok = sum(h.get("state") == "succeeded" for h in job.get("hosts", {}).values())
        except ValueError:
            ok = 0
        error = "" if ok == total else f"rc={proc.returncode} {proc.stdout[-300:]} {proc.stderr[-300:]}"
        return Sample(secs, ok, total, error)

    def command(self, scenario: str, spec: dict[str, Any]) -> list[str]:
        """The `troop` argv of a scenario (without --json)."""
        if scenario == "ping":
            return ["ping", "*"]
        if scenario == "cmd":
            return ["cmd", "*", "--", *spec["cmd"]]
        if scenario.startswith("push"):
            return ["file", "push", "*", spec["src"], spec["dest"], "--force"]
        if scenario == "read":
            return ["file", "read", "*", spec["path"]]
        if scenario.startswith("script"):
            return ["cmd", "*", "--", "/bin/sh", spec["script"]]
        raise KeyError(scenario)

    def run(self, scenario: str, spec: dict[str, Any], total: int) -> Sample:
        return self.cli(self.command(scenario, spec), total)

    def api_body(self, scenario: str, spec: dict[str, Any]) -> dict[str, Any]:
        target = {"hosts": "*"}
        if scenario == "ping":
            return {"kind": "ping", "target": target}
        if scenario == "cmd":
            return {"kind": "cmd", "target": target, "command": {"argv": spec["cmd"]}}
        if scenario.startswith("script"):
            return {"kind": "cmd", "target": target, "command": {"argv": ["/bin/sh", spec["script"]]}}
        if scenario == "read":
            return {"kind": "file.read", "target": target, "file": {"path": spec["path"]}}
        if scenario.startswith("push"):
            # The CLI's push (run before this) uploaded the file: the API job names its sha256.
            import hashlib

            sha = hashlib.sha256(Path(spec["src"]).read_bytes()).hexdigest()
            return {
                "kind": "file.push",
                "target": target,
                "file": {"sha256": sha, "name": Path(spec["src"]).name, "dest": spec["dest"], "force": True},
            }
        raise KeyError(scenario)

    def run_api(self, scenario: str, spec: dict[str, Any], total: int) -> Sample:
        body = self.api_body(scenario, spec)
        start = time.perf_counter()
        try:
            job = self.api("POST", "/api/v1/jobs?wait=60", body)
        except OSError as exc:
            return Sample(time.perf_counter() - start, 0, total, str(exc))
        secs = time.perf_counter() - start
        ok = sum(h["state"] == "succeeded" for h in job["hosts"].values())
        return Sample(secs, ok, total, "" if ok == total else json.dumps(job)[:400])

    def agent_pids(self) -> list[int]:
        return [p.pid for p in self.scouts.values()]
