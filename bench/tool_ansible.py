"""Ansible on the bench's hosts, over ssh, set up as the baseline did.

One private sshd per host namespace (key auth only, UsePAM no, UseDNS no, MaxStartups 500),
ansible-core from bench/work/ansible-venv in the root namespace: forks >= hosts,
ControlMaster=no / ControlPersist=no, pipelining off, interpreter /usr/bin/python3 (no
discovery), the default stdout callback. Ad-hoc commands, one per scenario.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from common import WORK, Procs, Sample, port_open, register, timed_cmd, wait_for
from hosts import Host, HostNet
from install import venv_bin

SSH_PORT = 2222
_OK = re.compile(r"^(\S+) \| (SUCCESS|CHANGED)\b", re.M)


def ensure_keys() -> Path:
    """A host key and a client key, made once into bench/work/ssh/ and reused."""
    d = WORK / "ssh"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("host_ed25519", "client_ed25519"):
        if not (d / name).exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"troop-bench {name}", "-f", str(d / name)],
                check=True,
            )
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    os.chmod(d / "client_ed25519", 0o600)
    return d


class AnsibleTool:
    name = "ansible"

    def __init__(self, root: Path, net: HostNet, procs: Procs) -> None:
        self.root = root / "ansible"
        self.net = net
        self.procs = procs
        self.sshd: dict[str, Any] = {}
        self.hosts: list[Host] = []
        self.made_run_sshd = False
        self.env: dict[str, str] = {}

    def version(self) -> str:
        _, proc = timed_cmd([str(venv_bin("ansible", "ansible")), "--version"], timeout=60)
        return proc.stdout.splitlines()[0] if proc.stdout else "?"

    # ------------------------------------------------------------ lifecycle
    def start(self, hosts: list[Host]) -> float:
        self.root.mkdir(parents=True, exist_ok=True)
        keys = ensure_keys()
        if not Path("/run/sshd").exists():  # sshd's privilege-separation directory
            Path("/run/sshd").mkdir(mode=0o755)
            self.made_run_sshd = True
            register("dirs", "/run/sshd")
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {SSH_PORT}",
                    f"HostKey {keys / 'host_ed25519'}",
                    f"AuthorizedKeysFile {keys / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "UseDNS no",
                    "MaxStartups 500",
                    "MaxSessions 100",
                    "StrictModes no",
                    "PidFile none",
                    "LogLevel ERROR",
                    "Subsystem sftp /usr/lib/openssh/sftp-server",
                    "",
                ]
            )
        )
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        (self.root / "ansible.cfg").write_text(
            "\n".join(
                [
                    "[defaults]",
                    f"inventory = {self.root / 'inventory.ini'}",
                    "forks = 50",
                    "host_key_checking = False",
                    "interpreter_python = /usr/bin/python3",
                    f"private_key_file = {keys / 'client_ed25519'}",
                    f"remote_tmp = {self.root / 'remote-tmp'}",
                    f"local_tmp = {self.root / 'local-tmp'}",
                    "retry_files_enabled = False",
                    "timeout = 60",
                    "",
                    "[ssh_connection]",
                    "ssh_args = -o ControlMaster=no -o ControlPersist=no "
                    "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR",
                    "pipelining = False",
                    "",
                ]
            )
        )
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        }
        return self.add_hosts(hosts)

    def add_hosts(self, hosts: list[Host]) -> float:
        start = time.monotonic()
        for h in hosts:
            args = ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.root / "sshd_config"), "-o", f"ListenAddress={h.addr}"]
            self.sshd[h.name] = self.procs.start(
                f"sshd {h.name}", self.net.wrap(h, args), log_path=self.root / f"sshd-{h.name}.log"
            )
            self.hosts.append(h)
        self._inventory()
        for h in hosts:
            wait_for(lambda h=h: port_open(h.addr, SSH_PORT), 30, f"sshd of {h.name}")
        return time.monotonic() - start

    def _inventory(self) -> None:
        lines = []
        for size in (15, 45):
            lines.append(f"[fleet{size}]")
            lines += [f"{h.name} ansible_host={h.addr} ansible_port={SSH_PORT}" for h in self.hosts[:size]]
        lines += ["[all:vars]", "ansible_user=root", ""]
        (self.root / "inventory.ini").write_text("\n".join(lines))

    def stop(self) -> list[str]:
        killed = self.procs.stop(list(self.sshd.values()))
        self.sshd = {}
        if self.made_run_sshd:
            try:
                Path("/run/sshd").rmdir()
            except OSError:
                pass
        return killed

    # ------------------------------------------------------------ scenarios
    def command(self, scenario: str, spec: dict[str, Any], total: int) -> list[str]:
        ansible = [str(venv_bin("ansible", "ansible")), f"fleet{total}"]
        if scenario == "ping":
            return [*ansible, "-m", "ping"]
        if scenario == "cmd":
            return [*ansible, "-m", "command", "-a", " ".join(spec["cmd"])]
        if scenario.startswith("push"):
            return [*ansible, "-m", "copy", "-a", f"src={spec['src']} dest={spec['ansible_dest']}"]
        if scenario == "read":
            return [*ansible, "-m", "slurp", "-a", f"src={spec['path']}"]
        if scenario.startswith("script"):
            return [*ansible, "-m", "command", "-a", f"/bin/sh {spec['script']}"]
        raise KeyError(scenario)

    def run(self, scenario: str, spec: dict[str, Any], total: int) -> Sample:
        secs, proc = timed_cmd(self.command(scenario, spec, total), env=self.env, timeout=600)
        ok = len({m.group(1) for m in _OK.finditer(proc.stdout)})
        error = "" if ok == total else f"rc={proc.returncode} {proc.stdout[-400:]} {proc.stderr[-300:]}"
        return Sample(secs, ok, total, error)

    def agent_pids(self) -> list[int]:
        return [p.pid for p in self.sshd.values()]
