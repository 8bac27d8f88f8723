"""Every message of the scout connection, as typed structs.

Clear messages travel in KIND_CLEAR frames during the handshake; sealed ones in KIND_SEALED
frames after it. Each struct has a fixed integer tag, which is also the message-type byte
of a sealed frame (and so part of its associated data). See docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

import msgspec

# ---------------------------------------------------------------- handshake (clear)


class ServerHello(msgspec.Struct, tag=1, forbid_unknown_fields=False):
    """General -> scout, first frame on every connection."""

    proto: int
    general_key: bytes  # DER SubjectPublicKeyInfo
    challenge: bytes  # 32 random bytes the scout must sign back
    ts: int  # ms since the epoch


class Facts(msgspec.Struct, forbid_unknown_fields=False):
    os: str  # "linux" | "windows" | ...
    platform: str = ""
    arch: str = ""
    ip: str = ""
    tags: list[str] = []
    version: str = ""
    plugins: list[str] = []  # installed, as "name:version"
    python: str = ""
    wants: list[str] = []  # plugins this scout should have: "name" or "name:version"


class Hello(msgspec.Struct, tag=2, forbid_unknown_fields=False):
    """Scout -> General, encoded and signed by the scout (inside a Signed)."""

    hostname: str
    facts: Facts
    scout_key: bytes  # DER SubjectPublicKeyInfo
    wrapped_key: bytes  # the scout's session key C, RSA-OAEP for the General
    challenge: bytes  # echo of ServerHello.challenge
    nonce: bytes  # 32 random bytes the General must sign back
    ts: int
    # Tasks this scout still holds (running, or with a result not yet sent). A job whose
    # General died learns from it, when the scout comes back elsewhere, which tasks died too.
    holding: list[str] = msgspec.field(default_factory=list)


class Welcome(msgspec.Struct, tag=3, forbid_unknown_fields=False):
    """General -> scout, encoded and signed by the General (inside a Signed).

    Sent once at the end of the handshake, and again on the same connection when a
    pending scout is accepted or rejected.
    """

    status: str  # "accepted" | "pending" | "rejected" | "denied"
    hostname: str
    nonce: bytes  # echo of Hello.nonce
    ts: int
    key_id: int = 0
    wrapped_key: bytes = b""  # the scout's General->scout key, RSA-OAEP for the scout
    blacklist: list[str] = []
    heartbeat: float = 15.0
    message: str = ""


class Signed(msgspec.Struct, tag=4):
    """An encoded Hello or Welcome and the RSA-PSS signature over exactly those bytes."""

    body: bytes
    signature: bytes


class Refused(msgspec.Struct, tag=5, forbid_unknown_fields=False):
    """Either side, in the clear, just before closing: why."""

    reason: str


ClearMessage = ServerHello | Signed | Refused

# ---------------------------------------------------------------- sealed, both ways


class Heartbeat(msgspec.Struct, tag=16):
    ts: int


# ---------------------------------------------------------------- sealed, General -> scout


class Command(msgspec.Struct, forbid_unknown_fields=False):
    argv: list[str] = []
    shell: str | None = None  # run through the host's shell instead of argv
    env: dict[str, str] = {}
    cwd: str | None = None
    max_output: int = 1024 * 1024  # per stream


class Task(msgspec.Struct, tag=17, forbid_unknown_fields=False):
    task_id: str
    job_id: str
    kind: str  # "ping" | "cmd" | ...
    timeout: float
    stream: bool = False  # send Output messages while running
    command: Command | None = None
    args: dict[str, Any] = {}  # kind-specific arguments of later job kinds


class Cancel(msgspec.Struct, tag=18):
    task_id: str


class Rekey(msgspec.Struct, tag=19):
    key_id: int
    wrapped_key: bytes  # the new General->scout key, RSA-OAEP for the scout


class ConfigUpdate(msgspec.Struct, tag=20, forbid_unknown_fields=False):
    blacklist: list[str] = []


# ---------------------------------------------------------------- sealed, scout -> General


class Ack(msgspec.Struct, tag=32, forbid_unknown_fields=False):
    task_id: str
    state: str = "received"  # "received" on arrival, "running" once the work has started


class Output(msgspec.Struct, tag=33):
    task_id: str
    stream: str  # "stdout" | "stderr"
    data: bytes


class Result(msgspec.Struct, tag=34, forbid_unknown_fields=False):
    task_id: str
    state: str  # "succeeded" | "failed" | "timed_out" | "refused"
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = None
    duration: float = 0.0
    data: dict[str, Any] = {}  # kind-specific result fields of later job kinds


class RekeyAck(msgspec.Struct, tag=35):
    key_id: int


class FactsUpdate(msgspec.Struct, tag=36):
    facts: Facts


SealedMessage = Heartbeat | Task | Cancel | Rekey | ConfigUpdate | Ack | Output | Result | RekeyAck | FactsUpdate

GENERAL_TO_SCOUT: frozenset[type] = frozenset({Heartbeat, Task, Cancel, Rekey, ConfigUpdate})
SCOUT_TO_GENERAL: frozenset[type] = frozenset({Heartbeat, Ack, Output, Result, RekeyAck, FactsUpdate})

_encoder = msgspec.msgpack.Encoder()
_clear_decoder = msgspec.msgpack.Decoder(ClearMessage)
_sealed_decoder = msgspec.msgpack.Decoder(SealedMessage)
_hello_decoder = msgspec.msgpack.Decoder(Hello)
_welcome_decoder = msgspec.msgpack.Decoder(Welcome)


def encode(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


def tag_of(msg: msgspec.Struct) -> int:
    tag = msg.__struct_config__.tag
    assert isinstance(tag, int)
    return tag


def decode_clear(data: bytes) -> ClearMessage:
    return _decode(_clear_decoder, data)  # type: ignore[no-any-return]


def decode_sealed(data: bytes) -> SealedMessage:
    return _decode(_sealed_decoder, data)  # type: ignore[no-any-return]


def decode_hello(data: bytes) -> Hello:
    return _decode(_hello_decoder, data)  # type: ignore[no-any-return]


def decode_welcome(data: bytes) -> Welcome:
    return _decode(_welcome_decoder, data)  # type: ignore[no-any-return]


def _decode(decoder: msgspec.msgpack.Decoder[Any], data: bytes) -> Any:
    from troop.protocol.errors import DecodeError

    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"bad message: {exc}") from exc
    except RecursionError as exc:  # msgspec's answer to deeply nested arrays or maps
        raise DecodeError("bad message: nested too deeply") from exc
