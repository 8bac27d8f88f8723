"""Targeting over the in-memory host index: every way, combined, and --one's fairness."""

from __future__ import annotations

from collections import Counter

import pytest

from troop.general.targeting import Target, TargetError, resolve
from troop.store import HostRow

HOSTS = [
    HostRow("web1", "accepted", os="linux", tags=["web", "blue"]),
    HostRow("web2", "accepted", os="linux", tags=["web"]),
    HostRow("web3", "accepted", os="windows", tags=["web"]),
    HostRow("db1", "accepted", os="linux", tags=["db"]),
    HostRow("new1", "pending", os="linux", tags=["web"]),
    HostRow("bad1", "rejected", os="linux", tags=["web"]),
]
ONLINE = {"web1", "web2", "db1", "new1"}


def names(**kw: object) -> list[str]:
    return resolve(Target(**kw), HOSTS, ONLINE.__contains__)  # type: ignore[arg-type]


def test_star_is_every_accepted_host() -> None:
    assert names(hosts="*") == ["db1", "web1", "web2", "web3"]


def test_lists_globs_os_and_tags_combine() -> None:
    assert names(hosts="web1,db1") == ["db1", "web1"]
    assert names(hosts="web*") == ["web1", "web2", "web3"]
    assert names(hosts="web[12]") == ["web1", "web2"]
    assert names(hosts="*", os="linux") == ["db1", "web1", "web2"]
    assert names(hosts="*", os="LINUX") == ["db1", "web1", "web2"]
    assert names(hosts="*", tags=["web"]) == ["web1", "web2", "web3"]
    assert names(hosts="*", tags=["web", "blue"]) == ["web1"]
    assert names(hosts="web*", os="windows", tags=["web"]) == ["web3"]
    assert names(hosts=" web1 , web2 ") == ["web1", "web2"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"hosts": "nosuch"}, "unknown host(s): nosuch"),
        ({"hosts": "web1,ghost"}, "unknown host(s): ghost"),
        ({"hosts": "new1"}, "not accepted: new1 (pending)"),
        ({"hosts": "bad1"}, "not accepted: bad1 (rejected)"),
        ({"hosts": "zz*"}, "no accepted host matches"),
        ({"hosts": "*", "os": "aix"}, "no accepted host matches"),
        ({"hosts": "*", "tags": ["web", "db"]}, "no accepted host matches"),
        ({"hosts": ""}, "empty target"),
        ({"hosts": "web3", "one": True}, "no online host matches"),
    ],
)
def test_targets_that_match_nothing_say_why(kw: dict[str, object], message: str) -> None:
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        names(**kw)


def test_glob_never_selects_pending_or_rejected_hosts() -> None:
    assert "new1" not in names(hosts="*") and "bad1" not in names(hosts="*")


def test_one_is_about_uniform_and_never_offline() -> None:
    picks = Counter(names(hosts="web*", one=True)[0] for _ in range(3000))
    assert set(picks) == {"web1", "web2"}  # web3 is offline: never chosen
    assert all(900 < count < 2100 for count in picks.values()), picks


def test_names_only_resolve_the_same_by_lookup_and_by_rows() -> None:
    by_name = {h.hostname: h for h in HOSTS}
    for expr in ("web1", "web2,web1,web2", "web*", "web1,web[23]"):
        assert resolve(Target(hosts=expr), by_name, ONLINE.__contains__) == names(hosts=expr)
