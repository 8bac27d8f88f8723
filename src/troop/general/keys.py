"""Who may connect: the key states of every scout, decided here and kept in the store.

A new hostname is pending (or accepted at once with auto_accept). A known hostname with
the same key gets its stored state. A known hostname with another key is denied, and the
stored key is NOT replaced: that is how a stolen hostname is kept out. Rejected stays
rejected across restarts because the state lives in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from troop.protocol.crypto import PublicKey
from troop.protocol.messages import Facts, Hello
from troop.store import HostRow, Store

log = logging.getLogger("troop.general.keys")

KeyListener = Callable[[str, str], Awaitable[None]]  # (hostname, new state or "deleted")


def utcnow() -> datetime:
    return datetime.now(UTC)


class KeyRegistry:
    def __init__(self, store: Store, auto_accept: bool) -> None:
        self.store = store
        self.auto_accept = auto_accept
        self.hosts: dict[str, HostRow] = {}
        self.denied: set[str] = set()
        self.wants: dict[str, list[str]] = {}  # plugins each scout should have, from its facts
        self._listeners: list[KeyListener] = []
        self.on_change: Callable[[list[str]], None] | None = None  # a cluster tells the other Generals

    async def load(self) -> None:
        self.hosts = {h.hostname: h for h in await self.store.all_hosts()}
        self.denied = {d.hostname for d in await self.store.denied_keys()}

    def listen(self, listener: KeyListener) -> None:
        self._listeners.append(listener)

    async def decide(self, hello: Hello, scout_key: PublicKey) -> str:
        """The state of a scout that proved it holds `scout_key`: accepted, pending, rejected or denied."""
        now = utcnow()
        row = self.hosts.get(hello.hostname)
        if row is None:
            state = "accepted" if self.auto_accept else "pending"
            row = _new_row(hello, scout_key, state, now)
            self.wants[row.hostname] = list(hello.facts.wants)
            await self.store.upsert_host(row)
            self.hosts[row.hostname] = row
            await self.store.audit(
                "scout", "key.new", row.hostname, True, {"state": state, "fingerprint": row.fingerprint}
            )
            log.info("new scout key", extra={"fields": {"host": row.hostname, "state": state, "fp": row.fingerprint}})
            self._changed([row.hostname])
            return state
        if row.fingerprint != scout_key.fingerprint:
            await self.store.add_denied_key(hello.hostname, scout_key.der, scout_key.fingerprint, now)
            if hello.hostname not in self.denied:
                self.denied.add(hello.hostname)
                await self.store.audit(
                    "scout", "key.denied", row.hostname, False, {"fingerprint": scout_key.fingerprint}
                )
                self._changed([row.hostname])
            log.warning(
                "denied a second key for a known hostname",
                extra={"fields": {"host": row.hostname, "fp": scout_key.fingerprint}},
            )
            return "denied"
        row = _with_facts(row, hello.facts, now)
        self.wants[row.hostname] = list(hello.facts.wants)
        self.hosts[row.hostname] = row
        await self.store.upsert_host(row)
        return row.state

    async def update_facts(self, hostname: str, facts: Facts) -> None:
        row = self.hosts.get(hostname)
        if row is not None:
            self.wants[hostname] = list(facts.wants)
            row = _with_facts(row, facts, utcnow())
            self.hosts[hostname] = row
            await self.store.upsert_host(row)

    async def touch(self, hostnames: list[str]) -> None:
        """Record that these hosts are connected now (last_seen)."""
        now = utcnow()
        for name in hostnames:
            row = self.hosts.get(name)
            if row is not None:
                row.last_seen = now
        if hostnames:
            await self.store.touch_hosts(hostnames, now)

    def lists(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"accepted": [], "pending": [], "rejected": [], "denied": []}
        for row in self.hosts.values():
            out[row.state].append(row.hostname)
        out["denied"] = list(self.denied)
        for names in out.values():
            names.sort()
        return out

    def accepted(self) -> list[HostRow]:
        return [h for h in self.hosts.values() if h.state == "accepted"]

    async def change(self, action: str, names: list[str], actor: str) -> tuple[list[str], dict[str, str]]:
        """accept, reject or delete the named hosts; returns (changed, {host: why not})."""
        changed: list[str] = []
        errors: dict[str, str] = {}
        for name in names:
            why = await self._change_one(action, name)
            if why:
                errors[name] = why
            else:
                changed.append(name)
            await self.store.audit(actor, f"key.{action}", name, not why, {"error": why} if why else None)
        self._changed(changed)
        for name in changed:
            for listener in self._listeners:
                await listener(name, "deleted" if action == "delete" else self.hosts[name].state)
        return changed, errors

    def _changed(self, names: list[str]) -> None:
        if names and self.on_change is not None:
            self.on_change(names)

    async def reload(self, names: list[str] | None = None) -> None:
        """Take what another General changed in the store (`names`, or every host), and act on
        state changes as if they were made here (a pending scout is let in, a deleted one cut off)."""
        if names is None:
            fresh = {h.hostname: h for h in await self.store.all_hosts()}
            names = sorted(set(fresh) | set(self.hosts))
        else:
            fresh = {}
            for name in names:
                row = await self.store.get_host(name)
                if row is not None:
                    fresh[name] = row
        self.denied = {d.hostname for d in await self.store.denied_keys()}
        for name in names:
            old, new = self.hosts.get(name), fresh.get(name)
            if new is None:
                self.hosts.pop(name, None)
            else:
                self.hosts[name] = new
            before, after = old.state if old else "deleted", new.state if new else "deleted"
            if before != after:
                for listener in self._listeners:
                    await listener(name, after)

    def names_for_all(self, action: str) -> list[str]:
        if action in ("accept", "reject"):
            return sorted(h.hostname for h in self.hosts.values() if h.state == "pending")
        return sorted(set(self.hosts) | self.denied)

    async def _change_one(self, action: str, name: str) -> str | None:
        row = self.hosts.get(name)
        if action == "delete":
            if row is None and name not in self.denied:
                return "no such host"
            await self.store.delete_host(name)
            self.hosts.pop(name, None)
            self.denied.discard(name)
            return None
        if row is None:
            return "no such host" if name not in self.denied else "only a denied key is known: delete it first"
        target = {"accept": "accepted", "reject": "rejected"}[action]
        if row.state == target:
            return f"already {target}"
        if action == "accept" and row.state == "rejected":
            return "rejected: delete the key first, then let the scout reconnect"
        await self.store.set_host_state(name, target)
        self.hosts[name] = replace(row, state=target, updated_at=utcnow())
        return None


def _new_row(hello: Hello, key: PublicKey, state: str, now: datetime) -> HostRow:
    return _with_facts(
        HostRow(
            hostname=hello.hostname,
            state=state,
            public_key=key.der,
            fingerprint=key.fingerprint,
            first_seen=now,
            last_seen=now,
            updated_at=now,
        ),
        hello.facts,
        now,
    )


def _with_facts(row: HostRow, facts: Facts, now: datetime) -> HostRow:
    return replace(
        row,
        os=facts.os.lower(),
        platform=facts.platform,
        arch=facts.arch,
        ip=facts.ip,
        version=facts.version,
        tags=list(dict.fromkeys(facts.tags)),
        plugins=list(facts.plugins),
        last_seen=now,
        updated_at=now,
    )
