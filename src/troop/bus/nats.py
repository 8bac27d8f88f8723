"""NatsBus: the bus between several Generals, over NATS core (nats-py).

Outages are normal events, not errors to die of:
- start() waits at most `start_wait` for the first connection, then returns disconnected and
  keeps trying in the background; subscriptions made meanwhile are attached once it connects.
- while disconnected, publish() and request() raise BusUnavailable at once (nats-py's
  reconnect buffer is turned off), and requests in flight fail the moment the link drops.
- nats-py reconnects forever with a jittered, growing delay (0.5-2 s by default) and
  replays the subscriptions itself; should it ever give up on a client (the server refused
  it), a fresh client is made and every subscription attached again.
- on_state listeners hear "disconnected" and "reconnected", so the General can fail
  cross-General work fast and resync from the store afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from nats import errors as nats_errors
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from troop.backoff import Backoff
from troop.bus.base import (
    DEFAULT_MAX_PAYLOAD,
    Bus,
    BusError,
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
from troop.errors import ConfigError

log = logging.getLogger("troop.bus")

CONNECT_TIMEOUT = 2  # seconds for one TCP + INFO/CONNECT attempt (nats-py takes whole seconds)
FIRST_CONNECT_WAIT = 1  # seconds between attempts of nats-py's first-connect loop
PING_INTERVAL = 5  # two unanswered pings mark a silently dead link in 10-15 s (nats-py's default: 4 min)
FLUSH_TIMEOUT = 2  # seconds subscribe() waits for the server to confirm the interest
SETTLE_TURNS = 100  # event-loop turns subscribe() gives nats-py's flusher before its round trip
START_WAIT = 2.0  # seconds start() waits for a first connection before going on disconnected
ERROR_LOG_REPEAT = 60.0  # the same connection error is logged at warning once a minute, else debug

_UNAVAILABLE = (
    nats_errors.OutboundBufferLimitError,  # publish while disconnected, with pending_size=0
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.ConnectionDrainingError,
    nats_errors.StaleConnectionError,
    nats_errors.FlushTimeoutError,
)


def parse_servers(url: str) -> list[str]:
    """`nats://host:port[,nats://...]` -> the server URLs; ConfigError when malformed."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ConfigError("bus URL is empty")
    for server in servers:
        parts = urlsplit(server)
        try:
            ok = parts.scheme in ("nats", "tls") and bool(parts.hostname) and (parts.port or 4222) > 0
        except ValueError:  # a port that is not a number
            ok = False
        if not ok:
            raise ConfigError(f"bus URL {redact(server)!r}: expected nats://HOST[:PORT] or tls://HOST[:PORT]")
    return servers


def redact(url: str) -> str:
    """The URL without its user:password, for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if "@" in rest else url


@contextlib.contextmanager
def _nats_errors(subject: str) -> Iterator[None]:
    """Translate nats-py's errors into the bus' own, at the boundary."""
    try:
        yield
    except nats_errors.NoRespondersError as exc:
        raise BusNoResponders(f"nobody subscribes to {subject}") from exc
    except _UNAVAILABLE as exc:
        raise BusUnavailable(f"no NATS connection to send {subject}: {exc}") from exc
    except nats_errors.TimeoutError as exc:
        raise BusTimeout(f"no reply on {subject} in time") from exc
    except nats_errors.Error as exc:
        raise BusError(f"NATS refused {subject}: {exc}") from exc
    except OSError as exc:  # the socket broke under a write
        raise BusUnavailable(f"NATS connection failed while sending {subject}: {exc!r}") from exc


class _NatsSub(Subscription):
    def __init__(self, bus: NatsBus, subject: str, queue: str | None, handler: Handler) -> None:
        self.subject = subject
        self.queue = queue
        self.client: Client | None = None  # the client this is attached to; a new client needs a new attach
        self.closed = False
        self._bus = bus
        self._handler = handler
        self._nats: NatsSubscription | None = None
        self._handling: asyncio.Task[Any] | None = None

    async def attach(self, nc: Client) -> None:
        self.client = nc
        # nats-py runs `cb` in one task per subscription, one message at a time: the order we promise.
        self._nats = await nc.subscribe(self.subject, queue=self.queue or "", cb=self._on_msg)
        if self.closed:  # unsubscribed while the SUB was on its way
            await self._drop()

    async def _on_msg(self, msg: Msg) -> None:
        if self.closed:
            return
        self._handling = asyncio.current_task()
        try:
            answer = await call_handler(self._handler, msg.subject, msg.data)
        finally:
            self._handling = None
        if answer is not None and msg.reply:
            await self._bus._respond(msg.reply, answer)
        if self.closed:  # unsubscribe() was called from inside the handler: finish it now
            await self._drop()

    async def unsubscribe(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._subs.discard(self)
        if self._handling is None or asyncio.current_task() is not self._handling:
            await self._drop()

    async def _drop(self) -> None:
        nats_sub, self._nats = self._nats, None
        if nats_sub is not None:
            # Closed or reconnecting clients either need no UNSUB or drop the sub from their replay list.
            with contextlib.suppress(nats_errors.Error):
                await nats_sub.unsubscribe()


class NatsBus(Bus):
    def __init__(
        self,
        servers: str | list[str],
        *,
        name: str = "troop-general",
        start_wait: float = START_WAIT,
        reconnect_wait: float = 1.0,
        reconnect_wait_max: float = 2.0,
    ) -> None:
        super().__init__()
        self._servers = parse_servers(servers if isinstance(servers, str) else ",".join(servers))
        self._name = name
        self._start_wait = start_wait
        # Backoff draws from [first/2, ceiling]: 0.5-1 s, then 0.5-2 s with the defaults.
        self._backoff = Backoff(first=reconnect_wait, cap=reconnect_wait_max)
        self._nc: Client | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._subs: set[_NatsSub] = set()
        self._inflight: set[asyncio.Future[None]] = set()  # set when the link drops: requests stop waiting
        self._ready = False  # the current client is connected and carries all our subscriptions
        self._down = False  # "disconnected" was announced and "reconnected" not yet
        self._closing = False
        self._next_server = 0
        self._last_error = ("", 0.0)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._connect_task is not None or self._closing:
            raise BusError("a NatsBus starts once; make a new one after close()")
        task = self._connect_task = self._spawn_connect(0.0)
        await asyncio.wait({task}, timeout=self._start_wait)
        if task.done():
            task.result()  # only a bug gets here; surface it at start rather than in a log
        else:
            where = ", ".join(redact(s) for s in self._servers)
            log.warning("NATS not reachable at %s; starting disconnected, retrying in the background", where)
            self._mark_down()

    async def close(self) -> None:
        self._closing = True
        self._ready = False
        task, self._connect_task = self._connect_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_inflight()
        for sub in self._subs:
            sub.closed = True
        self._subs.clear()
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(nats_errors.Error):
                await nc.close()

    def _spawn_connect(self, delay: float) -> asyncio.Task[None]:
        task = asyncio.create_task(self._connect(delay), name="bus-connect")
        task.add_done_callback(_log_crash)
        return task

    async def _connect(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        nc = self._nc = Client()
        await nc.connect(  # returns only once connected: with max_reconnect_attempts=-1 it never gives up
            self._servers,
            name=self._name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            connect_timeout=CONNECT_TIMEOUT,
            reconnect_time_wait=FIRST_CONNECT_WAIT,  # reconnects use _pick_server's jittered delay instead
            reconnect_to_server_handler=self._pick_server,
            ping_interval=PING_INTERVAL,
            max_outstanding_pings=2,
            pending_size=0,  # no silent buffering while disconnected: publish fails at once
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )
        # nats-py replays the subscriptions a client already has; ours made before this client
        # existed are attached here, again until none is left (subscribe() may run meanwhile).
        try:
            while pending := [sub for sub in self._subs if sub.client is not nc]:
                for sub in pending:
                    if not sub.closed:
                        await sub.attach(nc)
        except nats_errors.Error as exc:
            log.warning("bus subscriptions not attached (%r); the client closed and starts over", exc)
            return
        await self._settle(nc)
        self._ready = True
        url = nc.connected_url
        log.info("bus connected to NATS at %s", redact(url.geturl()) if url else "?")
        self._mark_up()

    # -- nats-py callbacks -----------------------------------------------------------------

    def _pick_server(self, servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        """Next server, round robin, and how long to wait first. nats-py would wait a fixed
        reconnect_time_wait; a jittered, growing delay keeps Generals that lost NATS together apart."""
        self._next_server += 1
        return servers[self._next_server % len(servers)], self._backoff.next_delay()

    async def _on_error(self, exc: Exception) -> None:
        # nats-py reports every failed attempt: one a second during an outage. Repeats go to debug.
        text, now = repr(exc), time.monotonic()
        last_text, last_at = self._last_error
        if text == last_text and now - last_at < ERROR_LOG_REPEAT:
            log.debug("bus NATS error: %s", text)
            return
        self._last_error = (text, now)
        log.warning("bus NATS error: %s", text)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("bus lost its NATS connection; reconnecting in the background")
        self._fail_inflight()
        self._mark_down()

    async def _on_reconnected(self) -> None:
        self._backoff.reset()
        url = self._nc.connected_url if self._nc else None
        log.info("bus reconnected to NATS at %s", redact(url.geturl()) if url else "?")
        self._mark_up()

    async def _on_closed(self) -> None:
        if self._closing:
            return
        # nats-py closes a client for good when the server refuses it (say, an authorization
        # error), even with unlimited reconnects. Heal without a restart: start over, fresh client.
        log.error("bus NATS client closed (%r); starting a new one", self._nc.last_error if self._nc else None)
        self._ready = False
        self._fail_inflight()
        self._mark_down()
        self._connect_task = self._spawn_connect(self._backoff.next_delay())

    # -- sending and receiving -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ready and self._nc is not None and self._nc.is_connected

    @property
    def max_payload(self) -> int:
        # The server announces its own limit on connect; until then assume NATS' default.
        return self._nc.max_payload if self._nc is not None else DEFAULT_MAX_PAYLOAD

    async def publish(self, subject: str, data: bytes) -> None:
        nc = self._check_send(subject, data)
        with _nats_errors(subject):
            await nc.publish(subject, data)

    async def subscribe(self, subject: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        check_subject(subject, wildcards=True)
        check_queue(queue)
        sub = _NatsSub(self, subject, queue, handler)
        self._subs.add(sub)
        nc = self._nc
        if self._ready and nc is not None and not nc.is_closed:
            # A failure here means the client is closing: the fresh client will attach the sub.
            with contextlib.suppress(nats_errors.Error):
                await sub.attach(nc)
                await self._settle(nc)
        return sub

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        nc = self._check_send(subject, data)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight.add(lost)
        call = asyncio.ensure_future(self._request(nc, subject, data, timeout))
        try:
            waiters: set[asyncio.Future[Any]] = {call, lost}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._inflight.discard(lost)
            if not call.done():
                call.cancel()
        if not call.done():
            raise BusUnavailable(f"the NATS connection dropped while waiting for a reply on {subject}")
        return call.result()

    @staticmethod
    async def _request(nc: Client, subject: str, data: bytes, timeout: float) -> bytes:
        with _nats_errors(subject):
            msg = await nc.request(subject, data, timeout=timeout)
        return msg.data

    async def _respond(self, reply_subject: str, answer: bytes) -> None:
        # Not _check_send(): a request may arrive while _connect() still attaches subscriptions.
        nc = self._nc
        try:
            check_size(answer, self.max_payload)
            if nc is None:
                raise BusUnavailable("the bus is closed")
            with _nats_errors(reply_subject):
                await nc.publish(reply_subject, answer)
        except BusError as exc:
            log.warning("bus reply not sent: %s", exc)

    def _check_send(self, subject: str, data: bytes) -> Client:
        check_subject(subject, wildcards=False)
        check_size(data, self.max_payload)
        nc = self._nc
        if nc is None or not self.connected:
            raise BusUnavailable(f"no NATS connection to send {subject}")
        return nc

    # -- state -----------------------------------------------------------------------------

    async def _settle(self, nc: Client) -> None:
        """Round trip to the server, so a subscription is live there when subscribe() returns."""
        # nats-py writes flush()'s PING straight to the socket, ahead of commands still queued
        # for its flusher task, so a PONG alone does not prove a new SUB arrived (it missed about
        # 1 in 40 here). Let the flusher write what is queued first; it needs a loop turn or two.
        for _ in range(SETTLE_TURNS):
            if not nc.is_connected or nc.pending_data_size == 0:
                break
            await asyncio.sleep(0)
        if nc.is_connected:
            with contextlib.suppress(nats_errors.Error):
                await nc.flush(FLUSH_TIMEOUT)

    def _fail_inflight(self) -> None:
        for lost in self._inflight:
            if not lost.done():
                lost.set_result(None)

    def _mark_down(self) -> None:
        if not self._down:
            self._down = True
            self._emit("disconnected")

    def _mark_up(self) -> None:
        if self._down:
            self._down = False
            self._emit("reconnected")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("bus connect task failed: %r", exc, exc_info=exc)
