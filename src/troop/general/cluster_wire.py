"""What Generals say to each other on the bus (msgpack via msgspec), and the subjects.

Subjects: `troop.g.<gid>.*` reach one General; `troop.c.*` reach all of them.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from troop.protocol import messages


def to_general(gid: str, what: str) -> str:
    return f"troop.g.{gid}.{what}"


PRESENCE = "troop.c.presence"
KEYS = "troop.c.keys"
ROTATE = "troop.c.rotate"
PLUGINS = "troop.c.plugins"
TOKENS = "troop.c.tokens"


class TaskBatch(msgspec.Struct):
    """Owner -> holder: send these tasks to these scouts of yours."""

    owner: str
    items: list[tuple[str, messages.Task]]


class TaskReply(msgspec.Struct):
    missing: list[str]  # hosts not connected to the holder (any more)


class CancelBatch(msgspec.Struct):
    items: list[tuple[str, str]]  # (host, task_id)


class EventBatch(msgspec.Struct):
    """Holder -> owner: what scouts said about the owner's tasks."""

    sender: str
    acks: list[tuple[str, str, str]] = []  # (host, task_id, state)
    outputs: list[tuple[str, messages.Output]] = []
    results: list[tuple[str, messages.Result]] = []
    gone: list[tuple[str, str]] = []  # (host, task_id): the scout disconnected holding it


class Presence(msgspec.Struct):
    """Scouts that connected to (with the tasks they hold) and left one General."""

    gid: str
    seq: int
    online: list[tuple[str, list[str]]] = []
    offline: list[str] = []
    full: bool = False  # a snapshot: these are all of the sender's scouts


class KeyChange(msgspec.Struct):
    hosts: list[str]


class Rotate(msgspec.Struct):
    why: str


class Empty(msgspec.Struct):
    pass


T = TypeVar("T")
_encoder = msgspec.msgpack.Encoder()


def encode(msg: Any) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes, kind: type[T]) -> T:
    return msgspec.msgpack.decode(data, type=kind)
