"""SealedBus: every message between Generals is authenticated; forged, moved or stale ones are dropped."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from unittest import mock

import pytest

from troop.bus import LocalBus
from troop.bus.sealed import OVERHEAD, BusSealError, SealedBus

KEY = os.urandom(32)


async def test_publish_and_request_round_trip() -> None:
    inner = LocalBus()
    bus = SealedBus(inner, KEY)
    got: list[bytes] = []

    async def handler(subject: str, data: bytes) -> bytes:
        got.append(data)
        return b"re:" + data

    await bus.subscribe("troop.g.a.tasks", handler)
    await bus.start()
    assert await bus.request("troop.g.a.tasks", b"hello", 1.0) == b"re:hello"
    await bus.publish("troop.g.a.tasks", b"again")
    await asyncio.sleep(0.05)
    assert got == [b"hello", b"again"]
    assert bus.max_payload == inner.max_payload - OVERHEAD
    await bus.close()


async def test_a_stranger_on_the_bus_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Someone who reached NATS but lacks the cluster key: their messages never reach a handler."""
    inner = LocalBus()
    bus = SealedBus(inner, KEY)
    stranger = SealedBus(inner, os.urandom(32))
    got: list[bytes] = []

    async def handler(subject: str, data: bytes) -> None:
        got.append(data)

    await bus.subscribe("troop.c.keys", handler)
    await bus.start()
    with caplog.at_level(logging.WARNING, logger="troop.bus.sealed"):
        await inner.publish("troop.c.keys", b"plain bytes, not sealed at all......................")
        await stranger.publish("troop.c.keys", b"forged")
        await inner.publish("troop.c.keys", b"short")
        await asyncio.sleep(0.05)
    assert got == []
    assert sum("dropped a bus message" in r.message for r in caplog.records) == 3
    await bus.publish("troop.c.keys", b"real")  # and the subscription still works
    await asyncio.sleep(0.05)
    assert got == [b"real"]
    await bus.close()


def test_a_message_cannot_move_to_another_subject() -> None:
    bus = SealedBus(LocalBus(), KEY)
    sealed = bus.seal("troop.g.a.cancel", b"x")
    assert bus.open("troop.g.a.cancel", sealed) == b"x"
    with pytest.raises(BusSealError):
        bus.open("troop.g.a.tasks", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(BusSealError):
        bus.open("troop.g.a.cancel", tampered)


def test_stale_messages_are_refused() -> None:
    bus = SealedBus(LocalBus(), KEY, window=60)
    with mock.patch("troop.bus.sealed.time.time", return_value=time.time() - 120):
        old = bus.seal("troop.c.rotate", b"x")
    with pytest.raises(BusSealError, match="stale"):
        bus.open("troop.c.rotate", old)


async def test_a_reply_answers_only_its_own_request() -> None:
    """A reply captured from the bus cannot be passed off as the answer to another request."""
    bus = SealedBus(LocalBus(), KEY)
    request_one = bus.seal("troop.g.a.tasks", b"one")
    reply_one = bus.seal("<troop.g.a.tasks", b"answer one", bound=request_one[:12])
    assert bus.open("<troop.g.a.tasks", reply_one, bound=request_one[:12]) == b"answer one"
    request_two = bus.seal("troop.g.a.tasks", b"two")
    with pytest.raises(BusSealError):
        bus.open("<troop.g.a.tasks", reply_one, bound=request_two[:12])
