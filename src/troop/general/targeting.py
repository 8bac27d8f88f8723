"""Which hosts a target names, resolved over the in-memory host index (never built SQL).

The four ways combine: host names (a comma list, globs allowed, `*` for all), operating
system, tags (every given tag must match), and `one` (one host of the matches, at random,
among those online; never an offline one).
"""

from __future__ import annotations

import fnmatch
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from troop.store import HostRow


class TargetError(Exception):
    """The target matched nothing, or is malformed; the message says which."""


@dataclass
class Target:
    hosts: str = "*"
    os: str | None = None
    tags: list[str] = field(default_factory=list)
    one: bool = False

    def describe(self) -> str:
        parts = [repr(self.hosts)]
        if self.os:
            parts.append(f"--os {self.os}")
        parts += [f"--tag {t}" for t in self.tags]
        if self.one:
            parts.append("--one")
        return " ".join(parts)


def patterns(expr: str) -> list[str]:
    return [p.strip() for p in expr.split(",") if p.strip()]


def name_matches(name: str, pats: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in pats)


def resolve(
    target: Target, hosts: Mapping[str, HostRow] | Iterable[HostRow], is_online: Callable[[str], bool]
) -> list[str]:
    """Host names the target selects among accepted hosts; `hosts` may hold every known host
    (by name, or as rows)."""
    pats = patterns(target.hosts)
    if not pats:
        raise TargetError("empty target: give host names, globs or '*'")
    known = hosts if isinstance(hosts, Mapping) else {h.hostname: h for h in hosts}
    literal = [p for p in pats if not any(c in p for c in "*?[")]
    unknown = [p for p in literal if p not in known]
    if unknown:
        raise TargetError(f"unknown host(s): {', '.join(unknown)}")
    waiting = [f"{p} ({known[p].state})" for p in literal if known[p].state != "accepted"]
    if waiting:
        raise TargetError(f"host(s) not accepted: {', '.join(waiting)}")
    # Only names: look them up instead of matching every known host (one host of 10,000).
    candidates = [known[p] for p in dict.fromkeys(literal)] if len(literal) == len(pats) else known.values()
    hosts = [h for h in candidates if h.state == "accepted"]
    wanted_os = target.os.lower() if target.os else None
    tags = set(target.tags)
    matched = sorted(
        h.hostname
        for h in hosts
        if name_matches(h.hostname, pats) and (wanted_os is None or h.os == wanted_os) and tags.issubset(h.tags)
    )
    if not matched:
        raise TargetError(f"no accepted host matches target {target.describe()}")
    if target.one:
        online = [name for name in matched if is_online(name)]
        if not online:
            raise TargetError(f"no online host matches target {target.describe()}")
        return [secrets.choice(online)]
    return matched
