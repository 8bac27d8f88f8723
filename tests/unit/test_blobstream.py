"""Sealed blob streams: round trips at the chunk boundaries, and every way a stream can be broken."""

from __future__ import annotations

import os
import struct

import pytest

from troop.protocol.blobstream import CHUNK, StreamOpener, StreamSealer, blob_key, seal_all
from troop.protocol.errors import SealError

KEY = blob_key(b"s" * 32, bytes(16), "ab" * 32)
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


def frames(stream: bytes) -> list[bytes]:
    """Split a sealed stream into its framed chunks (length prefix included)."""
    out, i = [], 0
    while i < len(stream):
        (n,) = struct.unpack_from(">I", stream, i)
        out.append(stream[i : i + 4 + n])
        i += 4 + n
    return out


def open_all(stream: bytes, step: int = 0) -> bytes:
    opener = StreamOpener(KEY)
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)] if step else [stream]
    out = b"".join(opener.feed(p) for p in pieces)
    opener.finish()
    return out


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    stream = seal_all(KEY, data)
    assert len(frames(stream)) == max(1, -(-size // CHUNK))
    assert open_all(stream) == data


@pytest.mark.parametrize("step", [1, 7, 4096, CHUNK + 3])
def test_round_trip_fed_in_odd_pieces(step: int) -> None:
    data = os.urandom(2 * CHUNK + 11)
    assert open_all(seal_all(KEY, data), step) == data


def test_the_sealer_matches_seal_all() -> None:
    data = os.urandom(CHUNK + 1)
    sealer = StreamSealer(KEY)
    stream = sealer.seal(data[:CHUNK], False) + sealer.seal(data[CHUNK:], True)
    assert open_all(stream) == data


def test_oversized_chunk_is_refused_by_the_sealer() -> None:
    with pytest.raises(ValueError):
        StreamSealer(KEY).seal(bytes(CHUNK + 1), True)


def three_chunks() -> list[bytes]:
    return frames(seal_all(KEY, os.urandom(2 * CHUNK + 100)))


def test_reordered_chunks() -> None:
    a, b, c = three_chunks()
    with pytest.raises(SealError):
        open_all(b + a + c)


def test_dropped_middle_chunk() -> None:
    a, _, c = three_chunks()
    with pytest.raises(SealError):
        open_all(a + c)


def test_dropped_last_chunk_is_a_cut_short_stream() -> None:
    a, b, _ = three_chunks()
    with pytest.raises(SealError, match="cut short"):
        open_all(a + b)


@pytest.mark.parametrize("cut", [1, 4, 5, CHUNK])
def test_truncated_stream(cut: int) -> None:
    stream = b"".join(three_chunks())
    with pytest.raises(SealError):
        open_all(stream[:-cut])


def test_empty_stream() -> None:
    with pytest.raises(SealError):
        open_all(b"")


@pytest.mark.parametrize("where", [4, 20, -1])
def test_tampered_byte(where: int) -> None:
    stream = bytearray(seal_all(KEY, os.urandom(1000)))
    stream[where] ^= 1
    with pytest.raises(SealError):
        open_all(bytes(stream))


def test_tampered_length_prefix() -> None:
    stream = bytearray(seal_all(KEY, os.urandom(1000)))
    stream[0:4] = struct.pack(">I", CHUNK + 17)  # over the largest sealed chunk
    with pytest.raises(SealError, match="length"):
        open_all(bytes(stream))


@pytest.mark.parametrize("trailer", [b"x", b"\x00\x00\x00", b"\x00\x00\x00\x20" + bytes(32)])
def test_trailing_data(trailer: bytes) -> None:
    with pytest.raises(SealError):
        open_all(seal_all(KEY, b"hello") + trailer)


def test_a_second_complete_stream_after_the_last_chunk() -> None:
    with pytest.raises(SealError, match="after the last"):
        open_all(seal_all(KEY, b"hello") + seal_all(KEY, b"hello"))


def test_wrong_key() -> None:
    other = blob_key(b"s" * 32, b"\x01" * 16, "ab" * 32)
    assert other != KEY
    with pytest.raises(SealError):
        StreamOpener(other).feed(seal_all(KEY, b"hello"))


def test_keys_depend_on_secret_nonce_and_blob() -> None:
    base = (b"s" * 32, bytes(16), "ab" * 32)
    assert blob_key(*base) == blob_key(*base)
    assert blob_key(b"t" * 32, base[1], base[2]) != KEY
    assert blob_key(base[0], b"\x01" * 16, base[2]) != KEY
    assert blob_key(base[0], base[1], "cd" * 32) != KEY
