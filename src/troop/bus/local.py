"""LocalBus: the in-process bus of a lone General. Same semantics as NatsBus, no server.

Subjects are matched with a token tree, as NATS' sublist does, so a General with one
subscription per scout still routes each publish in a few dictionary look-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TypeAlias

from troop.bus.base import (
    DEFAULT_MAX_PAYLOAD,
    Bus,
    BusNoResponders,
    BusTimeout,
    BusUnavailable,
    Handler,
    Subscription,
    call_handler,
    check_queue,
    check_size,
    check_subject,
)

log = logging.getLogger("troop.bus")

# A subscriber this far behind is stuck; NATS calls it a slow consumer and drops, and so do we.
DEFAULT_MAX_PENDING = 65536

_Delivery: TypeAlias = "tuple[str, bytes, asyncio.Future[bytes] | None]"  # subject, data, where the reply goes


class _Node:
    __slots__ = ("children", "subs", "tail")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}  # the key "*" is the one-token wildcard
        self.subs: list[_LocalSub] = []  # subscriptions whose subject ends here
        self.tail: list[_LocalSub] = []  # subscriptions whose next and last part is ">"

    def empty(self) -> bool:
        return not (self.children or self.subs or self.tail)


class _SubjectTree:
    def __init__(self) -> None:
        self._root = _Node()

    def add(self, sub: _LocalSub) -> None:
        node = self._root
        for part in sub.subject.split("."):
            if part == ">":
                node.tail.append(sub)
                return
            node = node.children.setdefault(part, _Node())
        node.subs.append(sub)

    def remove(self, sub: _LocalSub) -> None:
        path: list[tuple[_Node, str]] = []
        node = self._root
        for part in sub.subject.split("."):
            if part == ">":
                node.tail.remove(sub)
                break
            path.append((node, part))
            node = node.children[part]
        else:
            node.subs.remove(sub)
        # Prune empty branches, or per-scout subjects would grow the tree forever.
        for parent, part in reversed(path):
            if not parent.children[part].empty():
                break
            del parent.children[part]

    def match(self, subject: str) -> list[_LocalSub]:
        found: list[_LocalSub] = []
        parts = subject.split(".")
        # Each node is one pattern path, so no subscription is found twice.
        stack = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            if depth == len(parts):
                found.extend(node.subs)
                continue
            found.extend(node.tail)
            for key in (parts[depth], "*"):
                child = node.children.get(key)
                if child is not None:
                    stack.append((child, depth + 1))
        return found


class _LocalSub(Subscription):
    def __init__(self, bus: LocalBus, subject: str, queue: str | None, handler: Handler, max_pending: int) -> None:
        self.subject = subject
        self.queue = queue
        self._bus = bus
        self._handler = handler
        self._max_pending = max_pending
        self._inbox: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._closed = False
        self._dropping = False
        # One worker per subscription keeps its messages in order and a slow handler off publish's path.
        self._worker = asyncio.create_task(self._run(), name=f"bus-sub {subject}")

    def offer(self, delivery: _Delivery) -> None:
        if self._inbox.qsize() >= self._max_pending:
            if not self._dropping:
                log.warning("bus subscriber on %s is %d messages behind; dropping", self.subject, self._max_pending)
            self._dropping = True
            return
        self._inbox.put_nowait(delivery)

    async def _run(self) -> None:
        while not self._closed:
            subject, data, reply = await self._inbox.get()
            if self._inbox.empty():
                self._dropping = False
            answer = await call_handler(self._handler, subject, data)
            if reply is not None and answer is not None and not reply.done():
                if len(answer) > self._bus.max_payload:
                    log.error("bus reply on %s of %d bytes is over the limit; not sent", subject, len(answer))
                else:
                    reply.set_result(answer)

    async def unsubscribe(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._forget(self)
        if asyncio.current_task() is not self._worker:  # from inside the handler: let that call finish
            await self.stop()

    async def stop(self) -> None:
        self._closed = True
        if asyncio.current_task() is self._worker:  # close() called from this handler: it ends by itself
            return
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker


class LocalBus(Bus):
    """In-process bus; `connected` is True between start() and close() and never changes otherwise."""

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        super().__init__()
        self._max_payload = max_payload
        self._max_pending = max_pending
        self._tree = _SubjectTree()
        self._subs: set[_LocalSub] = set()
        self._waiting: set[asyncio.Future[bytes]] = set()
        self._running = False
        self._rand = random.Random()  # picks a queue-group member; not security-relevant  # noqa: S311

    async def start(self) -> None:
        self._running = True

    async def close(self) -> None:
        self._running = False
        subs, self._subs = self._subs, set()
        for sub in subs:
            self._tree.remove(sub)
        await asyncio.gather(*(sub.stop() for sub in subs))
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(BusUnavailable("the bus closed before the reply came"))

    @property
    def connected(self) -> bool:
        return self._running

    @property
    def max_payload(self) -> int:
        return self._max_payload

    async def publish(self, subject: str, data: bytes) -> None:
        self._check_send(subject, data)
        self._route(subject, data, None)

    async def subscribe(self, subject: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        check_subject(subject, wildcards=True)
        check_queue(queue)
        sub = _LocalSub(self, subject, queue, handler, self._max_pending)
        self._subs.add(sub)
        self._tree.add(sub)
        return sub

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        self._check_send(subject, data)
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if not self._route(subject, data, reply):
            raise BusNoResponders(f"nobody subscribes to {subject}")
        self._waiting.add(reply)
        try:
            return await asyncio.wait_for(reply, timeout)
        except TimeoutError:
            raise BusTimeout(f"no reply on {subject} within {timeout} s") from None
        finally:
            self._waiting.discard(reply)

    def _check_send(self, subject: str, data: bytes) -> None:
        check_subject(subject, wildcards=False)
        check_size(data, self._max_payload)
        if not self._running:
            raise BusUnavailable("the bus is not started")

    def _route(self, subject: str, data: bytes, reply: asyncio.Future[bytes] | None) -> int:
        """Hand the message to every plain subscription and one member per queue group."""
        targets: list[_LocalSub] = []
        groups: dict[str, list[_LocalSub]] = {}
        for sub in self._tree.match(subject):
            if sub.queue is None:
                targets.append(sub)
            else:
                groups.setdefault(sub.queue, []).append(sub)
        targets.extend(self._rand.choice(members) for members in groups.values())
        for sub in targets:
            sub.offer((subject, data, reply))
        return len(targets)

    def _forget(self, sub: _LocalSub) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._tree.remove(sub)
