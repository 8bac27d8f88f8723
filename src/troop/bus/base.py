"""The Bus interface: what one General tells another, as subjects and bytes.

Payloads are bytes; callers encode them (msgpack, msgspec) themselves, so the bus never
depends on a message schema. Subjects follow NATS: dot-separated tokens, `*` matches one
token and `>` one or more trailing tokens (subscribe only).

Delivery, the same in every implementation:
- at most once: a message published while nobody listens, or during an outage, is gone.
  Durable truth lives in the store; the bus only says "look now".
- each subscription gets its messages in publish order, one handler call at a time. A
  handler that wants concurrency starts its own tasks.
- a queue group (subscriptions sharing `queue=`) gets each message once, in one member.
- replies: a handler returns `bytes` to answer a request, or None to stay silent. A message
  sent with `publish()` has nobody to answer, so its handler's return value is dropped.
- a handler exception is logged and dropped; the subscription keeps going.

Errors:

    TroopError
    └── BusError                 bad subject, or anything else the bus refuses
        ├── BusPayloadTooLarge   message over max_payload (fields: size, limit)
        ├── BusUnavailable       no connection now: fail fast, retry later
        └── BusTimeout           a request got no reply in time
            └── BusNoResponders  nobody subscribes to that subject: failed at once
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Literal

from troop.errors import TroopError

log = logging.getLogger("troop.bus")

DEFAULT_MAX_PAYLOAD = 1024 * 1024  # NATS' default max_payload; LocalBus keeps it so code fails alike in both modes

BusState = Literal["disconnected", "reconnected"]
Handler = Callable[[str, bytes], Awaitable[bytes | None]]
StateListener = Callable[[BusState], None]

_BAD_CHARS = re.compile(r"[\s\x00]")  # whitespace would let a subject inject NATS protocol lines


class BusError(TroopError):
    """The bus refused or could not carry a message."""


class BusPayloadTooLarge(BusError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"bus message of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class BusUnavailable(BusError):
    """The bus has no connection now. Nothing was sent (or the reply can no longer come)."""


class BusTimeout(BusError):
    """A request got no reply in time."""


class BusNoResponders(BusTimeout):
    """Nobody subscribes to the subject, so no reply can come: raised at once, not at the timeout."""


def check_subject(subject: str, *, wildcards: bool) -> None:
    """Raise BusError unless `subject` is a valid NATS subject (`*`, `>` only when `wildcards`)."""
    parts = subject.split(".")
    ok = bool(subject) and not _BAD_CHARS.search(subject) and all(parts)
    for index, part in enumerate(parts if ok else ()):
        if part == ">":
            ok = wildcards and index == len(parts) - 1
        elif part == "*":
            ok = wildcards
        else:
            ok = "*" not in part and ">" not in part
        if not ok:
            break
    if not ok:
        raise BusError(f"invalid bus subject {subject!r}")


def check_queue(queue: str | None) -> None:
    if queue is not None and (not queue or _BAD_CHARS.search(queue)):
        raise BusError(f"invalid bus queue group {queue!r}")


def check_size(data: bytes, limit: int) -> None:
    if len(data) > limit:
        raise BusPayloadTooLarge(len(data), limit)


async def call_handler(handler: Handler, subject: str, data: bytes) -> bytes | None:
    """Run one handler call; an exception is logged (one line) and becomes "no reply"."""
    try:
        return await handler(subject, data)
    except Exception as exc:
        log.error("bus handler for %s failed: %r", subject, exc, exc_info=exc)
        return None


class Subscription(ABC):
    """One subscribe() call. unsubscribe() stops delivery at once: queued messages are dropped
    and a handler call in progress is cancelled, unless unsubscribe() is called from inside
    that very call, which then runs to its end."""

    subject: str
    queue: str | None

    @abstractmethod
    async def unsubscribe(self) -> None: ...


class Bus(ABC):
    """Publish/subscribe and request/reply between Generals. See the module docstring."""

    def __init__(self) -> None:
        self._listeners: list[StateListener] = []

    @abstractmethod
    async def start(self) -> None:
        """Begin; returns promptly even when the bus server is down (then `connected` is False)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop: subscriptions end, requests in flight fail with BusUnavailable."""

    @abstractmethod
    async def publish(self, subject: str, data: bytes) -> None:
        """Send one message. Raises BusUnavailable at once when there is no connection."""

    @abstractmethod
    async def subscribe(self, subject: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        """Call `handler(subject, data)` for each matching message; may be called before start()."""

    @abstractmethod
    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Send one message and return the first reply. Raises BusUnavailable, BusTimeout, BusNoResponders."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while messages can be sent now."""

    @property
    @abstractmethod
    def max_payload(self) -> int:
        """Largest message, in bytes, publish() and request() take."""

    def on_state(self, listener: StateListener) -> None:
        """Call `listener("disconnected")` when the connection is lost (or start() found none) and
        `listener("reconnected")` when it is back. The two alternate, starting with "disconnected".
        Listeners are plain functions run in the event loop; start a task for async work."""
        self._listeners.append(listener)

    def _emit(self, state: BusState) -> None:
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception as exc:
                log.error("bus state listener failed on %s: %r", state, exc, exc_info=exc)

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
