"""Presence: where each scout of a cluster is, from the Generals' numbered messages."""

from __future__ import annotations

from troop.general.cluster_wire import Presence as Msg
from troop.general.cluster_wire import decode, encode
from troop.general.presence import Presence


def test_deltas_in_order_apply_and_report_holding() -> None:
    p = Presence("me")
    seen: list[tuple[str, list[str]]] = []
    on_holding = lambda host, tasks: seen.append((host, tasks))  # noqa: E731
    assert p.apply(Msg("b", 1, online=[("h1", ["t1"]), ("h2", [])]), on_holding)
    assert p.apply(Msg("b", 2, offline=["h2"]), on_holding)
    assert p.where == {"h1": "b"}
    assert seen == [("h1", ["t1"]), ("h2", [])]


def test_a_gap_asks_for_a_snapshot_and_the_snapshot_replaces() -> None:
    p = Presence("me")
    noop = lambda host, tasks: None  # noqa: E731
    assert p.apply(Msg("b", 1, online=[("h1", [])]), noop)
    assert not p.apply(Msg("b", 3, online=[("h3", [])]), noop)  # 2 was missed
    assert p.apply(Msg("b", 3, online=[("h3", []), ("h4", [])], full=True), noop)
    assert p.where == {"h3": "b", "h4": "b"}
    assert p.apply(Msg("b", 4, offline=["h4"]), noop)
    assert p.apply(Msg("b", 2, online=[("h9", [])]), noop)  # a replay of an old one: ignored
    assert p.where == {"h3": "b"}


def test_a_scout_that_moved_is_not_removed_by_its_old_general() -> None:
    p = Presence("me")
    noop = lambda host, tasks: None  # noqa: E731
    p.apply(Msg("b", 1, online=[("h1", [])]), noop)
    p.apply(Msg("c", 1, online=[("h1", [])]), noop)
    p.apply(Msg("b", 2, offline=["h1"]), noop)  # b noticed late that h1 left it
    assert p.holder("h1") == "c"
    p.drop("c")
    assert p.holder("h1") is None


def test_own_changes_are_batched_and_numbered() -> None:
    p = Presence("me")
    assert p.take_delta() is None
    p.local_change("h1", True, ["t"])
    p.local_change("h2", True)
    p.local_change("h2", False)
    msg = p.take_delta()
    assert msg is not None and (msg.gid, msg.seq) == ("me", 1)
    assert msg.online == [("h1", ["t"])] and msg.offline == ["h2"]
    back = decode(encode(msg), Msg)
    assert back == msg
    snap = p.snapshot(["h1"])
    assert snap.full and snap.seq == 1 and snap.online == [("h1", [])]
    assert p.apply(msg, lambda h, t: None) and p.where == {}  # our own messages change nothing


async def test_a_count_that_disagrees_two_beats_running_asks_for_a_snapshot() -> None:
    """The safety net for a lost presence message with no later one to reveal the gap."""
    import asyncio
    from types import SimpleNamespace

    from troop.bus import LocalBus
    from troop.general.cluster import Cluster
    from troop.store import GeneralRow

    hub = SimpleNamespace(events=None, presence_changed=None, online={})
    parts = SimpleNamespace(remote=None, on_change=None)
    cluster = Cluster(None, LocalBus(), hub, parts, parts, "me")  # type: ignore[arg-type]
    asked: list[str] = []

    async def snapshot_from(gid: str) -> None:
        asked.append(gid)

    cluster._snapshot_from = snapshot_from  # type: ignore[method-assign]
    cluster.presence.where = {"h1": "b"}
    says_two = [GeneralRow(id="b", online=2)]
    cluster._check_counts(says_two)  # one beat: could be a delta still on its way
    await asyncio.sleep(0)
    assert asked == []
    cluster._check_counts(says_two)
    await asyncio.sleep(0)
    assert asked == ["b"]
    cluster._check_counts([GeneralRow(id="b", online=1)])  # agrees again
    cluster._check_counts(says_two)
    await asyncio.sleep(0)
    assert asked == ["b"]
