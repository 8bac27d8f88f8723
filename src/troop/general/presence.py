"""Which General each scout of the cluster is connected to, as the Generals tell each other.

Every General numbers its presence messages; a receiver that sees a gap (or was cut off
from the bus) asks the sender for a snapshot. Stale entries cannot route work for long:
a scout that left shows up in the next message, a dead General's entries are dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from troop.general.cluster_wire import Presence as PresenceMsg


class Presence:
    def __init__(self, gid: str) -> None:
        self.gid = gid
        self.where: dict[str, str] = {}  # host -> id of the (other) General it is connected to
        self._seqs: dict[str, int] = {}
        self.seq = 0  # of our own messages
        self._online: dict[str, list[str]] = {}
        self._offline: set[str] = set()

    # ------------------------------------------------------------ ours
    def local_change(self, host: str, online: bool, holding: list[str] | None = None) -> None:
        if online:
            self._offline.discard(host)
            self._online[host] = holding or []
        else:
            self._online.pop(host, None)
            self._offline.add(host)

    def take_delta(self) -> PresenceMsg | None:
        if not self._online and not self._offline:
            return None
        self.seq += 1
        msg = PresenceMsg(self.gid, self.seq, online=list(self._online.items()), offline=sorted(self._offline))
        self._online, self._offline = {}, set()
        return msg

    def snapshot(self, local_hosts: list[str]) -> PresenceMsg:
        # Pending changes go out in the next delta; the snapshot carries the current seq, so a
        # receiver applying it then that delta stays in step.
        return PresenceMsg(self.gid, self.seq, online=[(h, []) for h in local_hosts], full=True)

    # ------------------------------------------------------------ theirs
    def apply(self, msg: PresenceMsg, on_holding: Callable[[str, list[str]], None]) -> bool:
        """Apply another General's message; False when a message was missed (ask for a snapshot)."""
        if msg.gid == self.gid:
            return True
        last = self._seqs.get(msg.gid, 0)
        if msg.full:
            self.drop(msg.gid)
        elif msg.seq <= last:
            return True  # a replay, or older than a snapshot already applied
        self._seqs[msg.gid] = msg.seq
        self._apply_changes(msg, on_holding)
        return msg.full or msg.seq == last + 1  # False: one was missed, ask for a snapshot

    def _apply_changes(self, msg: PresenceMsg, on_holding: Callable[[str, list[str]], None]) -> None:
        for host in msg.offline:
            if self.where.get(host) == msg.gid:
                del self.where[host]
        for host, holding in msg.online:
            self.where[host] = msg.gid
            if not msg.full:
                on_holding(host, holding)

    def drop(self, gid: str) -> None:
        """Forget everything a General said (it died, or a snapshot replaces it)."""
        for host in [h for h, g in self.where.items() if g == gid]:
            del self.where[host]
        if gid != self.gid:
            self._seqs.pop(gid, None)

    def holder(self, host: str) -> str | None:
        return self.where.get(host)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for gid in self.where.values():
            out[gid] = out.get(gid, 0) + 1
        return out
