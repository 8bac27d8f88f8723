"""Hypothesis fuzzing of everything that reads a peer's bytes, and message round trips.

The contract: whatever arrives, the protocol layer answers with a typed message or a
ProtocolError subclass, never another exception (which would escape the connection handler).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troop.protocol import messages as m
from troop.protocol.channel import GENERAL_TO_SCOUT, PREFIX, SCOUT_TO_GENERAL, SealedChannel
from troop.protocol.errors import DecodeError, FrameError, ProtocolError
from troop.protocol.frames import HEADER, MAGIC, VERSION, Frame, FrameDecoder, encode_frame

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=150, deadline=None)

HOST = "web-01"
T0 = 1_700_000_000_000

# ---------------------------------------------------------------- strategies

u64 = st.integers(min_value=0, max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
msgpack_int = st.integers(min_value=-(2**63), max_value=2**64 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
floats = st.floats(allow_nan=False)
text = st.text(max_size=20)
blobs = st.binary(max_size=64)

# Values msgspec decodes back to themselves in an Any field.
scalars = st.one_of(st.none(), st.booleans(), msgpack_int, floats, text, blobs)
any_value: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
any_dict = st.dictionaries(text, any_value, max_size=4)

facts = st.builds(
    m.Facts,
    os=text,
    platform=text,
    arch=text,
    ip=text,
    tags=st.lists(text, max_size=4),
    version=text,
    plugins=st.lists(text, max_size=4),
    python=text,
)
command = st.builds(
    m.Command,
    argv=st.lists(text, max_size=4),
    shell=st.none() | text,
    env=st.dictionaries(text, text, max_size=4),
    cwd=st.none() | text,
    max_output=i64,
)

clear_messages = st.one_of(
    st.builds(m.ServerHello, proto=i64, general_key=blobs, challenge=blobs, ts=i64),
    st.builds(m.Signed, body=blobs, signature=blobs),
    st.builds(m.Refused, reason=text),
)
hellos = st.builds(
    m.Hello,
    hostname=text,
    facts=facts,
    scout_key=blobs,
    wrapped_key=blobs,
    challenge=blobs,
    nonce=blobs,
    ts=i64,
)
welcomes = st.builds(
    m.Welcome,
    status=st.sampled_from(["accepted", "pending", "rejected", "denied"]) | text,
    hostname=text,
    nonce=blobs,
    ts=i64,
    key_id=u32,
    wrapped_key=blobs,
    blacklist=st.lists(text, max_size=4),
    heartbeat=floats,
    message=text,
)

heartbeats = st.builds(m.Heartbeat, ts=i64)
general_only = st.one_of(
    st.builds(
        m.Task,
        task_id=text,
        job_id=text,
        kind=text,
        timeout=floats,
        stream=st.booleans(),
        command=st.none() | command,
        args=any_dict,
    ),
    st.builds(m.Cancel, task_id=text),
    st.builds(m.Rekey, key_id=u32, wrapped_key=blobs),
    st.builds(m.ConfigUpdate, blacklist=st.lists(text, max_size=4)),
)
scout_only = st.one_of(
    st.builds(m.Ack, task_id=text),
    st.builds(m.Output, task_id=text, stream=st.sampled_from(["stdout", "stderr"]), data=blobs),
    st.builds(
        m.Result,
        task_id=text,
        state=text,
        exit_code=st.none() | i64,
        stdout=blobs,
        stderr=blobs,
        stdout_truncated=st.booleans(),
        stderr_truncated=st.booleans(),
        error=st.none() | text,
        duration=floats,
        data=any_dict,
    ),
    st.builds(m.RekeyAck, key_id=u32),
    st.builds(m.FactsUpdate, facts=facts),
)
sealed_messages = st.one_of(heartbeats, general_only, scout_only)
every_message = st.one_of(clear_messages, hellos, welcomes, sealed_messages)

# Message-shaped junk: msgpack maps with a real tag and real field names, but values of any type.
FIELD_NAMES = sorted(
    {
        f
        for cls in (
            m.ServerHello,
            m.Hello,
            m.Welcome,
            m.Signed,
            m.Refused,
            m.Facts,
            m.Task,
            m.Command,
            m.Result,
            m.Rekey,
            m.Output,
        )
        for f in cls.__struct_fields__
    }
)
TAGS = [1, 2, 3, 4, 5, 16, 17, 18, 19, 20, 32, 33, 34, 35, 36]
shaped = st.builds(
    lambda tag, fields: msgspec.msgpack.encode({"type": tag, **fields}),
    st.sampled_from(TAGS) | any_value,
    st.dictionaries(st.sampled_from(FIELD_NAMES) | text, any_value, max_size=8),
)
peer_bytes = st.one_of(
    st.binary(max_size=300),
    shaped,
    any_value.map(msgspec.msgpack.encode),
    every_message.map(m.encode).map(lambda b: b[: len(b) // 2]),  # truncated messages
)

# ---------------------------------------------------------------- frames


def frame_stream() -> st.SearchStrategy[bytes]:
    good = st.builds(encode_frame, st.sampled_from([0, 1]), st.binary(max_size=50))
    header = st.builds(
        lambda magic, version, kind, length: HEADER.pack(magic, version, kind, length),
        st.sampled_from([MAGIC, b"XX"]) | st.binary(min_size=2, max_size=2),
        st.sampled_from([VERSION]) | st.integers(0, 255),
        st.integers(0, 3) | st.integers(0, 255),
        st.integers(0, 64) | u32,
    )
    return st.lists(good | header | st.binary(max_size=40), max_size=8).map(b"".join)


@FUZZ
@given(stream=frame_stream(), data=st.data())
def test_frame_decoder_yields_frames_or_frame_errors(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = FrameDecoder(max_body=1024)
    got: list[Frame] = []
    start = 0
    try:
        for cut in [*cuts, len(stream)]:
            got += decoder.feed(stream[start:cut])
            start = cut
    except FrameError:
        pass
    for frame in got:
        assert frame.kind in (0, 1)
        assert len(frame.body) <= 1024
    # Never more buffered than what was fed.
    assert decoder.buffered <= len(stream)


@FUZZ
@given(st.binary(max_size=500))
def test_frame_decoder_on_raw_bytes(data: bytes) -> None:
    try:
        frames = FrameDecoder().feed(data)
    except FrameError:
        return
    assert all(isinstance(f, Frame) for f in frames)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from([0, 1]), st.binary(max_size=100)), max_size=10),
    st.data(),
)
def test_frame_stream_round_trip(frames: list[tuple[int, bytes]], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(k, b) for k, b in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = FrameDecoder()
    got: list[Frame] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert got == [Frame(k, b) for k, b in frames]
    assert decoder.buffered == 0


# ---------------------------------------------------------------- message decoders


DECODERS = [m.decode_clear, m.decode_sealed, m.decode_hello, m.decode_welcome]


@FUZZ
@given(peer_bytes)
def test_message_decoders_raise_only_decode_error(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except DecodeError:
            pass


DEEP = b"\x91" * 100_000 + b"\xc0"  # [[[[ ... nil ... ]]]], far past any recursion limit


def _map(**fields: Any) -> bytes:
    """A msgpack map whose values are already-encoded msgpack bytes, in the order given."""
    enc = msgspec.msgpack.encode
    assert len(fields) < 16
    return bytes([0x80 | len(fields)]) + b"".join(enc(k) + v for k, v in fields.items())


@pytest.mark.parametrize(
    ("decode", "tag"),
    [(m.decode_clear, 5), (m.decode_sealed, 16), (m.decode_hello, 2), (m.decode_welcome, 3)],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
@pytest.mark.parametrize("where", ["top", "unknown-field"])
def test_deep_nesting_is_a_decode_error(decode: Any, tag: int, where: str) -> None:
    """msgspec raises RecursionError on deep nesting; it must come out as DecodeError.

    An unknown field (skipped, since unknown fields are allowed) is reachable before any
    authentication: a ServerHello or a Hello from whoever opened the connection.
    """
    enc = msgspec.msgpack.encode
    data = DEEP if where == "top" else _map(type=enc(tag), junk=DEEP)
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        _map(
            type=msgspec.msgpack.encode(17),
            task_id=b"\xa1t",
            job_id=b"\xa1j",
            kind=b"\xa3cmd",
            timeout=b"\x01",
            args=b"\x81\xa1k" + DEEP,
        ),
        _map(
            type=msgspec.msgpack.encode(34),
            task_id=b"\xa1t",
            state=b"\xa1x",
            data=b"\x81\xa1k" + DEEP,
        ),
    ],
    ids=["Task.args", "Result.data"],
)
def test_deep_nesting_in_an_any_field_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        m.decode_sealed(data)


# ---------------------------------------------------------------- the sealed channel


def channels() -> tuple[SealedChannel, SealedChannel]:
    g2s, s2g = bytes(range(32)), bytes(range(32, 64))
    clock = lambda: T0  # noqa: E731
    general = SealedChannel(HOST, GENERAL_TO_SCOUT, g2s, s2g, clock=clock)
    scout = SealedChannel(HOST, SCOUT_TO_GENERAL, s2g, g2s, clock=clock)
    return general, scout


sealed_junk = st.one_of(
    st.binary(max_size=200),
    # a plausible prefix (known key id 0, fresh time) in front of junk, so the AEAD is reached
    st.builds(
        lambda t, seq, rest: PREFIX.pack(t, 0, seq, T0) + rest,
        st.integers(0, 255),
        u64,
        st.binary(max_size=200),
    ),
)


@FUZZ
@given(sealed_junk)
def test_sealed_channel_open_raises_only_protocol_errors(body: bytes) -> None:
    general, scout = channels()
    for channel in (general, scout):
        try:
            channel.open(body)
        except ProtocolError:
            pass
        else:  # pragma: no cover - would mean a forgery
            pytest.fail("junk opened as a message")


@FUZZ
@given(sealed_messages, st.integers(0, 10_000), st.integers(0, 255))
def test_sealed_frame_with_one_byte_changed_never_opens(
    msg: msgspec.Struct, position: int, mask: int
) -> None:
    general, scout = channels()
    sender, receiver = (scout, general) if type(msg) in m.SCOUT_TO_GENERAL else (general, scout)
    body = bytearray(sender.seal(msg))
    body[position % len(body)] ^= mask or 1
    with pytest.raises(ProtocolError):
        receiver.open(bytes(body))


# ---------------------------------------------------------------- round trips


@ROUND_TRIP
@given(clear_messages)
def test_clear_round_trip(msg: msgspec.Struct) -> None:
    assert m.decode_clear(m.encode(msg)) == msg


@ROUND_TRIP
@given(hellos)
def test_hello_round_trip(msg: m.Hello) -> None:
    assert m.decode_hello(m.encode(msg)) == msg


@ROUND_TRIP
@given(welcomes)
def test_welcome_round_trip(msg: m.Welcome) -> None:
    assert m.decode_welcome(m.encode(msg)) == msg


@ROUND_TRIP
@given(sealed_messages)
def test_sealed_round_trip(msg: msgspec.Struct) -> None:
    assert m.decode_sealed(m.encode(msg)) == msg


@ROUND_TRIP
@given(sealed_messages)
def test_sealed_round_trip_through_the_channel_and_frames(msg: msgspec.Struct) -> None:
    general, scout = channels()
    sender, receiver = (scout, general) if type(msg) in m.SCOUT_TO_GENERAL else (general, scout)
    frames = FrameDecoder().feed(encode_frame(1, sender.seal(msg)))
    assert len(frames) == 1
    assert receiver.open(frames[0].body) == msg


def test_round_trip_strategies_cover_every_message_type() -> None:
    covered = {
        m.ServerHello,
        m.Signed,
        m.Refused,
        m.Hello,
        m.Welcome,
        m.Heartbeat,
        m.Task,
        m.Cancel,
        m.Rekey,
        m.ConfigUpdate,
        m.Ack,
        m.Output,
        m.Result,
        m.RekeyAck,
        m.FactsUpdate,
    }
    tagged = {
        cls
        for cls in vars(m).values()
        if isinstance(cls, type)
        and issubclass(cls, msgspec.Struct)
        and cls.__struct_config__.tag is not None
    }
    assert tagged == covered
