"""The bench's hosts: one network namespace each, veth'd to a bridge in the root namespace.

    hosts = HostNet.create(45)      # namespaces tbench-h01.., bridge tbench0, 10.213.77.0/24
    hosts.wrap("h03", ["sshd", ...]) -> ["ip", "netns", "exec", "tbench-h03", "sshd", ...]
    hosts.destroy()

The controllers (General, salt-master, ansible) stay in the root namespace and listen on the
bridge address. Where namespaces are not allowed, every host is a loopback alias 127.0.0.x
(the host's agent runs in the root namespace) and `network` says why.
Only addresses made here are ever used: the 10.213.77.0/24 subnet lives on our own bridge.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

PREFIX = "tbench-"
BRIDGE = "tbench0"
SUBNET = "10.213.77"
CONTROLLER_IP = f"{SUBNET}.1"


@dataclass
class Host:
    name: str  # h01..
    addr: str
    netns: str | None  # None on the loopback fallback


@dataclass
class HostNet:
    hosts: list[Host] = field(default_factory=list)
    controller: str = "127.0.0.1"
    network: str = ""
    namespaces: bool = False

    def wrap(self, host: Host, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", host.netns, *args] if host.netns else list(args)

    @classmethod
    def create(cls, count: int, force_loopback: str = "") -> HostNet:
        reason = force_loopback or probe_namespaces()
        if reason:
            return cls.loopback(count, reason)
        net = cls(controller=CONTROLLER_IP, namespaces=True)
        try:
            _ip("link", "add", BRIDGE, "type", "bridge")
            _ip("addr", "add", f"{CONTROLLER_IP}/24", "dev", BRIDGE)
            _ip("link", "set", BRIDGE, "up")
            for i in range(1, count + 1):
                name = f"h{i:02d}"
                ns, addr = PREFIX + name, f"{SUBNET}.{i + 1}"
                outer, inner = f"tbv{i:02d}", f"tbp{i:02d}"
                _ip("netns", "add", ns)
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", outer, "master", BRIDGE)
                _ip("link", "set", outer, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                net.hosts.append(Host(name, addr, ns))
        except (OSError, subprocess.CalledProcessError) as exc:
            destroy_all()
            return cls.loopback(count, f"setting up namespaces failed: {_why(exc)}")
        sysctl = f"hosts in their own network namespaces (ip netns), veth pairs on bridge {BRIDGE} {SUBNET}.0/24"
        net.network = sysctl
        return net

    @classmethod
    def loopback(cls, count: int, reason: str) -> HostNet:
        hosts = [Host(f"h{i:02d}", f"127.0.0.{i + 10}", None) for i in range(1, count + 1)]
        return cls(hosts=hosts, controller="127.0.0.1", network=f"loopback (namespaces denied: {reason})")

    def destroy(self) -> None:
        if self.namespaces:
            destroy_all()


def probe_namespaces() -> str:
    """'' when a namespace with a veth to the root namespace can be made here, else why not."""
    ns = PREFIX + "probe"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", "tbvprobe", "type", "veth", "peer", "name", "tbpprobe")
        _ip("link", "set", "tbpprobe", "netns", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", ns, "true"], check=True, capture_output=True, timeout=10)
        return ""
    except FileNotFoundError:
        return "the ip command is missing"
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return _why(exc)
    finally:
        subprocess.run(["ip", "link", "del", "tbvprobe"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def destroy_all() -> None:
    """Remove every namespace, veth and bridge this bench makes (by their prefixes)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(PREFIX):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
            for pid in pids.split():
                subprocess.run(["kill", "-9", pid], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(("tbv", "tbp")) or name == BRIDGE:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"`{' '.join(map(str, exc.cmd))}`: {(exc.stderr or '').strip() or exc.returncode}"
    return str(exc)
