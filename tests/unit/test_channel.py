"""The sealed channel: AES-256-GCM frames with authenticated type, key id, sequence and time."""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec
import pytest

from troop.protocol import messages as m
from troop.protocol.channel import (
    DEFAULT_WINDOW,
    GENERAL_TO_SCOUT,
    PREFIX,
    SCOUT_TO_GENERAL,
    SealedChannel,
)
from troop.protocol.crypto import NONCE_SIZE, KeyPair, SessionCipher, new_session_key
from troop.protocol.errors import DecodeError, ProtocolError, ReplayError, SealError, StaleError

HOST = "web-01.example.com"
T0 = 1_700_000_000_000  # ms since the epoch


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Pair:
    general: SealedChannel
    scout: SealedChannel
    g2s: bytes
    s2g: bytes
    general_clock: Clock
    scout_clock: Clock


def make_pair(
    *,
    general_host: str = HOST,
    scout_host: str = HOST,
    window: float = DEFAULT_WINDOW,
) -> Pair:
    g2s, s2g = new_session_key(), new_session_key()
    gclock, sclock = Clock(), Clock()
    general = SealedChannel(general_host, GENERAL_TO_SCOUT, g2s, s2g, window=window, clock=gclock)
    scout = SealedChannel(scout_host, SCOUT_TO_GENERAL, s2g, g2s, window=window, clock=sclock)
    return Pair(general, scout, g2s, s2g, gclock, sclock)


TASK = m.Task(
    task_id="t-1",
    job_id="j-1",
    kind="cmd",
    timeout=30.0,
    stream=True,
    command=m.Command(argv=["uname", "-a"], env={"LANG": "C"}, cwd="/tmp"),
    args={"nested": [1, "two", b"three", None, {"x": 1.5}]},
)

GENERAL_ONLY: list[msgspec.Struct] = [
    TASK,
    m.Cancel(task_id="t-1"),
    m.Rekey(key_id=2, wrapped_key=b"\x01" * 256),
    m.ConfigUpdate(blacklist=["rm", "shutdown"]),
]
SCOUT_ONLY: list[msgspec.Struct] = [
    m.Ack(task_id="t-1"),
    m.Output(task_id="t-1", stream="stdout", data=b"partial\n"),
    m.Result(
        task_id="t-1",
        state="succeeded",
        exit_code=0,
        stdout=b"Linux\n",
        stderr=b"",
        duration=0.25,
        data={"k": [1, 2]},
    ),
    m.RekeyAck(key_id=2),
    m.FactsUpdate(facts=m.Facts(os="linux", ip="10.0.0.1", tags=["web"], plugins=["p"])),
]
BOTH_WAYS: list[msgspec.Struct] = [m.Heartbeat(ts=T0)]


def name(msg: msgspec.Struct) -> str:
    return type(msg).__name__


def test_direction_sets_cover_every_sealed_type() -> None:
    sealed = {type(x) for x in GENERAL_ONLY + SCOUT_ONLY + BOTH_WAYS}
    assert sealed == set(m.GENERAL_TO_SCOUT | m.SCOUT_TO_GENERAL)
    assert m.GENERAL_TO_SCOUT & m.SCOUT_TO_GENERAL == {m.Heartbeat}


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("msg", GENERAL_ONLY + BOTH_WAYS, ids=name)
def test_general_to_scout_round_trip(msg: msgspec.Struct) -> None:
    pair = make_pair()
    assert pair.scout.open(pair.general.seal(msg)) == msg


@pytest.mark.parametrize("msg", SCOUT_ONLY + BOTH_WAYS, ids=name)
def test_scout_to_general_round_trip(msg: msgspec.Struct) -> None:
    pair = make_pair()
    assert pair.general.open(pair.scout.seal(msg)) == msg


def test_a_conversation_both_ways() -> None:
    pair = make_pair()
    for i in range(50):
        task = m.Task(task_id=f"t{i}", job_id="j", kind="ping", timeout=5.0)
        assert pair.scout.open(pair.general.seal(task)) == task
        assert pair.general.open(pair.scout.seal(m.Ack(task_id=f"t{i}"))) == m.Ack(task_id=f"t{i}")
        result = m.Result(task_id=f"t{i}", state="succeeded", exit_code=0)
        assert pair.general.open(pair.scout.seal(result)) == result


def test_sealed_body_layout() -> None:
    pair = make_pair()
    first = pair.general.seal(m.Heartbeat(ts=1))
    second = pair.general.seal(TASK)
    for seq, body, msg in ((1, first, m.Heartbeat(ts=1)), (2, second, TASK)):
        msg_type, key_id, got_seq, ts = PREFIX.unpack_from(body)
        assert PREFIX.size == 21
        assert (msg_type, key_id, got_seq, ts) == (m.tag_of(msg), 0, seq, T0)
        # 21-byte prefix, 12-byte nonce, ciphertext of the msgpack body plus a 16-byte tag
        assert len(body) == PREFIX.size + NONCE_SIZE + len(m.encode(msg)) + 16
        assert m.encode(msg) not in body


def test_a_frame_built_by_hand_from_the_documented_layout_opens() -> None:
    pair = make_pair()
    prefix = PREFIX.pack(16, 0, 1, T0)
    aad = prefix + b"G" + HOST.encode()
    nonce, ct = SessionCipher(pair.g2s).seal(m.encode(m.Heartbeat(ts=7)), aad)
    assert pair.scout.open(prefix + nonce + ct) == m.Heartbeat(ts=7)


def test_the_plaintext_is_the_tagged_msgpack_map() -> None:
    pair = make_pair()
    body = pair.general.seal(m.Cancel(task_id="abc"))
    plain = SessionCipher(pair.g2s).open(
        body[21:33], body[33:], body[:21] + GENERAL_TO_SCOUT + HOST.encode()
    )
    assert msgspec.msgpack.decode(plain) == {"type": 18, "task_id": "abc"}


# ---------------------------------------------------------------- direction of message types


@pytest.mark.parametrize("msg", SCOUT_ONLY, ids=name)
def test_scout_messages_refused_from_the_general(msg: msgspec.Struct) -> None:
    pair = make_pair()
    with pytest.raises(DecodeError, match="not allowed"):
        pair.scout.open(pair.general.seal(msg))


@pytest.mark.parametrize("msg", GENERAL_ONLY, ids=name)
def test_general_messages_refused_from_the_scout(msg: msgspec.Struct) -> None:
    pair = make_pair()
    with pytest.raises(DecodeError, match="not allowed"):
        pair.general.open(pair.scout.seal(msg))


def test_type_byte_must_match_the_message() -> None:
    pair = make_pair()
    prefix = PREFIX.pack(m.tag_of(m.Cancel(task_id="x")), 0, 1, T0)  # says Cancel ...
    aad = prefix + GENERAL_TO_SCOUT + HOST.encode()
    nonce, ct = SessionCipher(pair.g2s).seal(m.encode(TASK), aad)  # ... but carries a Task
    with pytest.raises(DecodeError, match="does not match"):
        pair.scout.open(prefix + nonce + ct)


def test_authentic_but_undecodable_plaintext_is_a_decode_error() -> None:
    pair = make_pair()
    prefix = PREFIX.pack(16, 0, 1, T0)
    aad = prefix + GENERAL_TO_SCOUT + HOST.encode()
    nonce, ct = SessionCipher(pair.g2s).seal(b"\xc1 not msgpack", aad)
    with pytest.raises(DecodeError):
        pair.scout.open(prefix + nonce + ct)


# ---------------------------------------------------------------- tampering


def test_every_single_byte_flip_is_refused() -> None:
    pair = make_pair()
    body = pair.general.seal(TASK)
    for i in range(len(body)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(body)
            bad[i] ^= mask
            with pytest.raises(SealError):
                pair.scout.open(bytes(bad))
    # None of the refusals moved the channel's state: the genuine frame still opens.
    assert pair.scout.open(body) == TASK


def test_every_truncation_and_an_extension_are_refused() -> None:
    pair = make_pair()
    body = pair.general.seal(TASK)
    for n in range(len(body)):
        with pytest.raises(SealError):
            pair.scout.open(body[:n])
    with pytest.raises(SealError):
        pair.scout.open(body + b"\x00")
    assert pair.scout.open(body) == TASK


@pytest.mark.parametrize("junk", [b"", b"\x00" * 48, os.urandom(49), os.urandom(500)])
def test_junk_is_refused(junk: bytes) -> None:
    with pytest.raises(ProtocolError):
        make_pair().scout.open(junk)


# ---------------------------------------------------------------- replay and freshness


def test_sequence_numbers_start_at_one_and_go_up() -> None:
    pair = make_pair()
    seqs = [PREFIX.unpack_from(pair.general.seal(m.Heartbeat(ts=0)))[2] for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]


def test_replay_of_the_same_body_refused() -> None:
    pair = make_pair()
    body = pair.general.seal(TASK)
    assert pair.scout.open(body) == TASK
    with pytest.raises(ReplayError):
        pair.scout.open(body)


def test_older_sequence_refused_after_a_newer_one() -> None:
    pair = make_pair()
    first = pair.general.seal(m.Cancel(task_id="a"))
    second = pair.general.seal(m.Cancel(task_id="b"))
    assert pair.scout.open(second) == m.Cancel(task_id="b")
    with pytest.raises(ReplayError):
        pair.scout.open(first)


def test_gaps_in_the_sequence_are_allowed() -> None:
    pair = make_pair()
    first = pair.general.seal(m.Cancel(task_id="a"))
    pair.general.seal(m.Cancel(task_id="lost"))
    third = pair.general.seal(m.Cancel(task_id="c"))
    assert pair.scout.open(first) == m.Cancel(task_id="a")
    assert pair.scout.open(third) == m.Cancel(task_id="c")


def test_replay_refused_in_the_other_direction_too() -> None:
    pair = make_pair()
    body = pair.scout.seal(m.Ack(task_id="t"))
    pair.general.open(body)
    with pytest.raises(ReplayError):
        pair.general.open(body)


@pytest.mark.parametrize("skew_ms", [120_001, -120_001, 3_600_000, -T0])
def test_stale_timestamp_refused(skew_ms: int) -> None:
    pair = make_pair()
    pair.scout_clock.now = T0 + skew_ms  # the receiver's clock is off by skew_ms
    with pytest.raises(StaleError):
        pair.scout.open(pair.general.seal(m.Heartbeat(ts=0)))


@pytest.mark.parametrize("skew_ms", [0, 1, -1, 60_000, -60_000, 120_000, -120_000])
def test_skew_inside_the_window_accepted(skew_ms: int) -> None:
    pair = make_pair()
    pair.scout_clock.now = T0 + skew_ms
    assert pair.scout.open(pair.general.seal(m.Heartbeat(ts=0))) == m.Heartbeat(ts=0)


def test_window_is_configurable() -> None:
    pair = make_pair(window=5.0)
    pair.general_clock.now = T0 - 5_000
    assert pair.general.open(pair.scout.seal(m.Ack(task_id="a"))) == m.Ack(task_id="a")
    pair.general_clock.now = T0 + 5_001
    with pytest.raises(StaleError):
        pair.general.open(pair.scout.seal(m.Ack(task_id="b")))


def test_a_delayed_frame_goes_stale() -> None:
    pair = make_pair()
    body = pair.general.seal(TASK)  # sealed at T0 ...
    pair.scout_clock.now = T0 + 121_000  # ... delivered two minutes later
    with pytest.raises(StaleError):
        pair.scout.open(body)


def test_default_window_is_two_minutes() -> None:
    assert DEFAULT_WINDOW == 120.0


# ---------------------------------------------------------------- binding to host and direction


def test_frame_for_another_hostname_refused() -> None:
    pair = make_pair(general_host="web-01", scout_host="web-02")
    with pytest.raises(SealError):
        pair.scout.open(pair.general.seal(m.Heartbeat(ts=0)))
    with pytest.raises(SealError):
        pair.general.open(pair.scout.seal(m.Heartbeat(ts=0)))


def test_frame_turned_around_refused_even_under_the_right_key() -> None:
    pair = make_pair()
    body = pair.general.seal(m.Heartbeat(ts=0))
    # A second "General" end that (wrongly) holds the General->scout key as its receive key:
    # only the direction byte in the associated data stops the reflected frame.
    mirror = SealedChannel(
        HOST, GENERAL_TO_SCOUT, new_session_key(), pair.g2s, clock=pair.general_clock
    )
    with pytest.raises(SealError):
        mirror.open(body)
    assert pair.scout.open(body) == m.Heartbeat(ts=0)


def test_reflection_refused_when_both_directions_share_a_key() -> None:
    key = new_session_key()
    general = SealedChannel(HOST, GENERAL_TO_SCOUT, key, key, clock=Clock())
    with pytest.raises(SealError):
        general.open(general.seal(m.Heartbeat(ts=0)))


def test_frame_under_another_key_refused() -> None:
    pair = make_pair()
    impostor = SealedChannel(HOST, GENERAL_TO_SCOUT, new_session_key(), pair.s2g, clock=Clock())
    with pytest.raises(SealError):
        pair.scout.open(impostor.seal(TASK))


def test_unknown_key_id_refused() -> None:
    pair = make_pair()
    pair.general.set_send_key(7, pair.g2s)  # the right key bytes, a key id the scout never got
    with pytest.raises(SealError, match="unknown key id 7"):
        pair.scout.open(pair.general.seal(m.Heartbeat(ts=0)))


# ---------------------------------------------------------------- key rotation


def test_rotation_old_and_new_key_ids_both_open_then_a_third_drops_the_oldest() -> None:
    pair = make_pair()
    k1, k2 = new_session_key(), new_session_key()

    under_0 = pair.general.seal(m.Cancel(task_id="k0"))  # sealed before the switch
    pair.scout.add_recv_key(1, k1)
    pair.general.set_send_key(1, k1)
    assert pair.general.send_key_id == 1
    under_1 = pair.general.seal(m.Cancel(task_id="k1"))
    assert PREFIX.unpack_from(under_0)[1] == 0
    assert PREFIX.unpack_from(under_1)[1] == 1
    assert pair.scout.open(under_0) == m.Cancel(task_id="k0")
    assert pair.scout.open(under_1) == m.Cancel(task_id="k1")

    pair.scout.add_recv_key(2, k2)  # third key: 0 goes, 1 and 2 stay
    assert pair.scout.open(pair.general.seal(m.Cancel(task_id="still k1"))) == m.Cancel(
        task_id="still k1"
    )
    pair.general.set_send_key(2, k2)
    assert pair.scout.open(pair.general.seal(m.Cancel(task_id="k2"))) == m.Cancel(task_id="k2")
    pair.general.set_send_key(0, pair.g2s)
    with pytest.raises(SealError, match="unknown key id 0"):
        pair.scout.open(pair.general.seal(m.Cancel(task_id="k0 again")))


def test_rotation_sequence_numbers_carry_on_across_keys() -> None:
    pair = make_pair()
    old = pair.general.seal(m.Cancel(task_id="old"))
    k1 = new_session_key()
    pair.scout.add_recv_key(1, k1)
    pair.general.set_send_key(1, k1)
    new = pair.general.seal(m.Cancel(task_id="new"))
    assert pair.scout.open(new) == m.Cancel(task_id="new")
    with pytest.raises(ReplayError):  # a rotation is no way around the sequence check
        pair.scout.open(old)


def keys_that_open(channel: SealedChannel, host: str, key_ids: dict[int, bytes]) -> set[int]:
    opened: set[int] = set()
    for key_id, key in key_ids.items():
        sender = SealedChannel(host, GENERAL_TO_SCOUT, key, new_session_key(), send_key_id=key_id)
        try:
            channel.open(sender.seal(m.Heartbeat(ts=0)))
        except SealError:
            continue
        except ReplayError:  # opened (authenticated) but its sequence number was used
            pass
        opened.add(key_id)
    return opened


@pytest.mark.parametrize(
    "ids",
    [
        [0, 1, 2],
        [5, 6, 7, 8],
        [7, 3, 5],  # key ids handed out in no particular order
        [0xFFFF_FFFE, 0xFFFF_FFFF, 0],  # a u32 key id counter wrapping around
    ],
)
def test_rotation_keeps_the_two_most_recently_added_keys(ids: list[int]) -> None:
    keys = {key_id: new_session_key() for key_id in ids}
    scout = SealedChannel(
        HOST, SCOUT_TO_GENERAL, new_session_key(), keys[ids[0]], recv_key_id=ids[0]
    )
    for key_id in ids[1:]:
        scout.add_recv_key(key_id, keys[key_id])
    assert keys_that_open(scout, HOST, keys) == set(ids[-2:])


def test_rekey_flow(scout_keys: KeyPair) -> None:
    """What a rotation looks like on the wire: Rekey down, RekeyAck up, then the new key."""
    pair = make_pair()
    new_key = new_session_key()
    rekey = m.Rekey(key_id=1, wrapped_key=scout_keys.public.encrypt(new_key))

    got = pair.scout.open(pair.general.seal(rekey))
    assert isinstance(got, m.Rekey)
    pair.scout.add_recv_key(got.key_id, scout_keys.decrypt(got.wrapped_key))
    ack = pair.general.open(pair.scout.seal(m.RekeyAck(key_id=got.key_id)))
    assert ack == m.RekeyAck(key_id=1)

    in_flight = pair.general.seal(m.Cancel(task_id="sealed before the switch"))
    pair.general.set_send_key(1, new_key)
    after = pair.general.seal(m.Cancel(task_id="after"))
    assert pair.scout.open(in_flight) == m.Cancel(task_id="sealed before the switch")
    assert pair.scout.open(after) == m.Cancel(task_id="after")
    assert PREFIX.unpack_from(after)[1] == 1
