"""The bus between Generals: one small interface, an in-process and a NATS implementation.

    open_bus("")                      -> LocalBus, for a lone General
    open_bus("nats://h1:4222,nats://h2:4222") -> NatsBus (nats-py is imported only then)

See troop.bus.base for the delivery rules and the error tree.
"""

from __future__ import annotations

from troop.bus.base import (
    DEFAULT_MAX_PAYLOAD,
    Bus,
    BusError,
    BusNoResponders,
    BusPayloadTooLarge,
    BusState,
    BusTimeout,
    BusUnavailable,
    Handler,
    StateListener,
    Subscription,
)
from troop.bus.local import LocalBus
from troop.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "Bus",
    "BusError",
    "BusNoResponders",
    "BusPayloadTooLarge",
    "BusState",
    "BusTimeout",
    "BusUnavailable",
    "Handler",
    "LocalBus",
    "StateListener",
    "Subscription",
    "open_bus",
]


def open_bus(url: str, *, name: str = "troop-general") -> Bus:
    """The bus a URL names: "" or "local" -> LocalBus; "nats://host:port[,nats://...]" -> NatsBus.

    `name` labels the NATS connection (shown in NATS monitoring). Raises ConfigError for any
    other URL, or when nats-py is not installed (it comes with the `scale` extra)."""
    url = url.strip()
    if url in ("", "local"):
        return LocalBus()
    if not url.startswith(("nats://", "tls://")):
        raise ConfigError(f"bus URL must be empty, 'local' or nats://HOST:PORT[,nats://...], not {url.split('://')[0]}://...")
    try:
        from troop.bus.nats import NatsBus  # only scale-out Generals need nats-py
    except ImportError as exc:
        raise ConfigError(f"a nats:// bus needs nats-py (pip install 'troopstack[scale]'): {exc}") from exc
    return NatsBus(url, name=name)
