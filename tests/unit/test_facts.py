"""Host facts the scout sends in its handshake."""

from __future__ import annotations

import ipaddress
import platform as pyplatform
import socket
import time
from typing import Any

import msgspec
import pytest

from troop.protocol.messages import Facts
from troop.scout.facts import gather_facts, platform_string, primary_ip
from troop.scout.platform import current_os


def test_gather_facts_describes_this_host() -> None:
    got = gather_facts(["web", "eu"], "1.2.3", ["scout_manager-linux-v1.0.0"])
    assert isinstance(got, Facts)
    assert got.os == current_os()
    assert got.arch == pyplatform.machine()
    assert got.python == pyplatform.python_version()
    assert got.version == "1.2.3"
    assert got.tags == ["web", "eu"]
    assert got.plugins == ["scout_manager-linux-v1.0.0"]
    assert got.ip == primary_ip()
    # The facts travel in the handshake: they must survive msgpack.
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(got), type=Facts) == got


def test_platform_string_matches_the_standard_library() -> None:
    assert platform_string() == pyplatform.platform(terse=True)


def test_tags_are_deduplicated_in_order_and_blank_tags_dropped() -> None:
    got = gather_facts(["web", "db", "web", " ", "", "cache", "db"], "0")
    assert got.tags == ["web", "db", "cache"]


def test_plugins_default_to_none_and_are_copied() -> None:
    assert gather_facts([], "0").plugins == []
    plugins = ["a-linux-v1.0.0"]
    got = gather_facts([], "0", plugins)
    plugins.append("b-linux-v1.0.0")
    assert got.plugins == ["a-linux-v1.0.0"]


def test_ip_is_an_ipv4_address() -> None:
    address = ipaddress.IPv4Address(gather_facts([], "0").ip)
    assert not address.is_unspecified


def test_gathering_is_fast() -> None:
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        gather_facts(["a"], "0")
        timings.append(time.perf_counter() - started)
    assert max(timings) < 0.005


class _NoRouteSocket:
    """Stands in for a host without an IPv4 route, which this test host cannot become."""

    def __init__(self, *args: Any) -> None:
        pass

    def __enter__(self) -> _NoRouteSocket:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def connect(self, address: tuple[str, int]) -> None:
        raise OSError(101, "Network is unreachable")


def test_ip_falls_back_to_loopback_without_a_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "socket", _NoRouteSocket)
    assert primary_ip() == "127.0.0.1"
    assert gather_facts([], "0").ip == "127.0.0.1"


def test_ip_probe_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[tuple[str, int]] = []

    class Recording(socket.socket):
        def connect(self, address: Any) -> None:
            used.append(address)
            super().connect(address)

        def send(self, *args: Any) -> int:
            raise AssertionError("the IP probe must not send anything")

        def sendto(self, *args: Any) -> int:
            raise AssertionError("the IP probe must not send anything")

    monkeypatch.setattr(socket, "socket", Recording)
    primary_ip()
    assert used and ipaddress.IPv4Address(used[0][0]) in ipaddress.IPv4Network("192.0.2.0/24")


def test_a_failing_fact_does_not_fail_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("no uname here")

    monkeypatch.setattr(pyplatform, "machine", broken)
    got = gather_facts(["web"], "1.0")
    assert got.arch == ""
    assert got.os == current_os() and got.tags == ["web"] and got.version == "1.0"
