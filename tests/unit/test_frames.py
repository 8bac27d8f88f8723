"""Frames: the 8-byte header, the incremental decoder and the size cap."""

from __future__ import annotations

import struct

import pytest

from troop.protocol.errors import BadMagic, BadVersion, FrameError, FrameTooLarge, ProtocolError
from troop.protocol.frames import (
    DEFAULT_MAX_BODY,
    HEADER_SIZE,
    KIND_CLEAR,
    KIND_SEALED,
    MAGIC,
    VERSION,
    Frame,
    FrameDecoder,
    encode_frame,
    parse_header,
)


def raw_header(
    magic: bytes = MAGIC, version: int = VERSION, kind: int = KIND_CLEAR, length: int = 0
) -> bytes:
    return struct.pack(">2sBBI", magic, version, kind, length)


SAMPLE = [
    Frame(KIND_CLEAR, b""),
    Frame(KIND_SEALED, b"x"),
    Frame(KIND_CLEAR, bytes(range(256))),
    Frame(KIND_SEALED, b"TP\x01\x00" * 50),  # a body that looks like headers
    Frame(KIND_CLEAR, b"\x00" * 1000),
]
STREAM = b"".join(encode_frame(f.kind, f.body) for f in SAMPLE)


def test_header_layout_is_exactly_as_documented() -> None:
    data = encode_frame(KIND_SEALED, b"abc")
    assert HEADER_SIZE == 8
    assert data == b"TP" + bytes([1, 1]) + (3).to_bytes(4, "big") + b"abc"


def test_parse_header_returns_kind_and_length() -> None:
    assert parse_header(raw_header(kind=KIND_SEALED, length=1234)) == (KIND_SEALED, 1234)


@pytest.mark.parametrize("frame", SAMPLE)
def test_round_trip(frame: Frame) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(frame.kind, frame.body)) == [frame]
    assert decoder.buffered == 0


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert got == SAMPLE, f"cut at {cut}"
        assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(STREAM)):
        got += decoder.feed(STREAM[i : i + 1])
    assert got == SAMPLE
    assert decoder.buffered == 0


def test_partial_frame_is_held_until_complete() -> None:
    data = encode_frame(KIND_CLEAR, b"hello")
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.feed(data[-1:]) == [Frame(KIND_CLEAR, b"hello")]


def test_many_frames_merged_into_one_chunk() -> None:
    frames = [Frame(i % 2, str(i).encode() * (i % 7)) for i in range(500)]
    chunk = b"".join(encode_frame(f.kind, f.body) for f in frames)
    decoder = FrameDecoder()
    assert decoder.feed(chunk) == frames
    assert decoder.buffered == 0


def test_merged_chunk_ending_mid_frame_keeps_the_tail() -> None:
    tail = encode_frame(KIND_SEALED, b"tail body")
    decoder = FrameDecoder()
    assert decoder.feed(STREAM + tail[:5]) == SAMPLE
    assert decoder.buffered == 5
    assert decoder.feed(tail[5:]) == [Frame(KIND_SEALED, b"tail body")]


def test_empty_feed_returns_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.buffered == 0


@pytest.mark.parametrize("magic", [b"XX", b"tp", b"PT", b"\x00\x00"])
def test_bad_magic(magic: bytes) -> None:
    with pytest.raises(BadMagic):
        FrameDecoder().feed(raw_header(magic=magic) + b"body")


def test_bad_magic_is_a_frame_error_and_a_protocol_error() -> None:
    with pytest.raises(FrameError) as info:
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")
    assert isinstance(info.value, BadMagic)
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version_carries_the_version(version: int) -> None:
    with pytest.raises(BadVersion) as info:
        FrameDecoder().feed(raw_header(version=version))
    assert info.value.version == version
    assert str(version) in str(info.value)


@pytest.mark.parametrize("kind", [2, 7, 255])
def test_unknown_kind(kind: int) -> None:
    with pytest.raises(FrameError, match="kind"):
        FrameDecoder().feed(raw_header(kind=kind))


def test_huge_length_refused_as_soon_as_the_header_is_complete() -> None:
    header = raw_header(kind=KIND_SEALED, length=0xFFFFFFFF)
    decoder = FrameDecoder()
    # Seven bytes are not a header yet: nothing to judge.
    assert decoder.feed(header[:7]) == []
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header[7:])
    assert info.value.size == 0xFFFFFFFF
    assert info.value.limit == DEFAULT_MAX_BODY
    # Nothing of the (announced) body was waited for or buffered.
    assert decoder.buffered <= HEADER_SIZE


def test_huge_length_refused_before_the_body_arrives_with_a_small_cap() -> None:
    decoder = FrameDecoder(max_body=1024)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(raw_header(length=1025))
    assert (info.value.size, info.value.limit) == (1025, 1024)
    assert decoder.buffered <= HEADER_SIZE


def test_length_exactly_at_the_cap_is_accepted() -> None:
    decoder = FrameDecoder(max_body=16)
    assert decoder.feed(encode_frame(KIND_CLEAR, b"a" * 16, max_body=16)) == [
        Frame(KIND_CLEAR, b"a" * 16)
    ]


def test_bad_frame_after_good_ones_in_the_same_chunk() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadMagic):
        decoder.feed(STREAM + b"NOPE\x00\x00\x00\x00")


def test_encode_over_the_cap_refused() -> None:
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(KIND_SEALED, b"x" * 101, max_body=100)
    assert (info.value.size, info.value.limit) == (101, 100)
    assert encode_frame(KIND_SEALED, b"x" * 100, max_body=100)[HEADER_SIZE:] == b"x" * 100


def test_encode_over_the_default_cap_refused() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(KIND_SEALED, bytes(DEFAULT_MAX_BODY + 1))


def test_default_cap_is_8_mib() -> None:
    assert DEFAULT_MAX_BODY == 8 * 1024 * 1024
    assert FrameDecoder().max_body == DEFAULT_MAX_BODY
