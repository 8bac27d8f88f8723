"""What a scout tells the General about its host (sent in the handshake and on change)."""

from __future__ import annotations

import logging
import os
import platform as pyplatform
import socket
from collections.abc import Callable

from troop.protocol.messages import Facts
from troop.scout import platform as scout_platform

log = logging.getLogger(__name__)

FALLBACK_IP = "127.0.0.1"
# TEST-NET-1 (RFC 5737): never routed on the internet. Connecting a UDP socket sends no
# packet; it only makes the kernel choose the source address it would route through.
_PROBE_ADDRESS = ("192.0.2.1", 9)


def gather_facts(tags: list[str], version: str, plugins: list[str] | None = None) -> Facts:
    """This host's facts. Fast (no network traffic, no subprocess) and never raises."""
    return Facts(
        os=_safe(scout_platform.current_os, "unknown"),
        platform=_safe(platform_string, ""),
        arch=_safe(pyplatform.machine, ""),
        ip=primary_ip(),
        tags=list(dict.fromkeys(t.strip() for t in tags if t.strip())),
        version=version,
        plugins=list(plugins or []),
        python=_safe(pyplatform.python_version, ""),
    )


def platform_string() -> str:
    """Like ``platform.platform(terse=True)``, without its slow parts.

    On Linux platform.platform() scans the Python binary for the libc version and runs
    ``uname -p`` in a subprocess (5 ms and more); glibc answers ``confstr`` directly.
    """
    system, release = pyplatform.system(), pyplatform.release()
    parts = [system, release]
    if system == "Linux":
        parts.append(pyplatform.machine())
        libc = _libc_version()
        if libc:
            parts += ["with", libc]
    return "-".join(p for p in parts if p)


def _libc_version() -> str:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):  # Windows, or a libc without it (musl)
        return ""
    return (value or "").replace(" ", "")


def primary_ip() -> str:
    """The IPv4 address of the interface that holds the default route, else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(_PROBE_ADDRESS)
            address = sock.getsockname()[0]
    except OSError:  # no IPv4 route at all (an isolated host or container)
        return FALLBACK_IP
    if not isinstance(address, str) or address.startswith(("0.", "127.")):
        return FALLBACK_IP
    return address


def _safe(get: Callable[[], str], default: str) -> str:
    try:
        return get()
    except Exception:  # a fact is never worth a failed handshake
        log.exception("could not read a host fact")
        return default
