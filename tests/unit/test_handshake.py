"""The three-message handshake: ServerHello, Signed(Hello), Signed(Welcome)."""

from __future__ import annotations

import os

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from troop.protocol import handshake as hs
from troop.protocol import messages as m
from troop.protocol.channel import GENERAL_TO_SCOUT, SCOUT_TO_GENERAL, SealedChannel
from troop.protocol.crypto import KeyPair, PublicKey, new_session_key
from troop.protocol.errors import DecodeError, HandshakeError, SealError
from troop.protocol.frames import KIND_CLEAR, VERSION, FrameDecoder, encode_frame

HOST = "web-01.example.com"
NOW = 1_700_000_000_000
FACTS = m.Facts(
    os="linux",
    platform="debian-12",
    arch="x86_64",
    ip="10.0.0.5",
    tags=["web", "eu"],
    version="0.1.0",
    plugins=["disk"],
    python="3.11.9",
)


def over_the_wire(msg: msgspec.Struct) -> m.ClearMessage:
    """Encode a clear message into a frame and decode it back, as the peer would see it."""
    frames = FrameDecoder().feed(encode_frame(KIND_CLEAR, m.encode(msg)))
    assert len(frames) == 1 and frames[0].kind == KIND_CLEAR
    return m.decode_clear(frames[0].body)


def resign(signed_body: bytes, signer: KeyPair) -> m.Signed:
    return m.Signed(body=signed_body, signature=signer.sign(signed_body))


def hello_fields(signed: m.Signed) -> dict[str, object]:
    fields = msgspec.msgpack.decode(signed.body)
    assert isinstance(fields, dict)
    return fields


# ---------------------------------------------------------------- happy path


def test_full_handshake_then_sealed_traffic(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    cluster_secret_b = new_session_key()
    scout_c = new_session_key()

    # 1. General -> scout
    server_hello = hs.server_hello(general_keys, NOW)
    got_sh = over_the_wire(server_hello)
    assert isinstance(got_sh, m.ServerHello)
    assert got_sh.proto == VERSION
    assert got_sh.general_key == general_keys.public.der
    assert len(got_sh.challenge) == hs.CHALLENGE_SIZE

    # The scout pins the General's key (first contact, or a configured fingerprint).
    pinned = PublicKey.from_der(got_sh.general_key)
    assert pinned.fingerprint == general_keys.public.fingerprint

    # 2. scout -> General
    signed_hello, nonce = hs.build_hello(scout_keys, HOST, FACTS, got_sh, scout_c, NOW + 50)
    assert len(nonce) == hs.CHALLENGE_SIZE
    got_hello = over_the_wire(signed_hello)
    assert isinstance(got_hello, m.Signed)
    hello, scout_pub, c_at_general = hs.open_hello(
        got_hello, server_hello.challenge, general_keys, NOW + 100
    )
    assert hello.hostname == HOST
    assert hello.facts == FACTS
    assert hello.nonce == nonce
    assert scout_pub.der == scout_keys.public.der
    assert c_at_general == scout_c

    # 3. General -> scout: accepted, with the per-scout General->scout key
    g2s = hs.scout_key_for(cluster_secret_b, c_at_general, hello.hostname)
    signed_welcome = hs.build_welcome(
        general_keys,
        hello,
        scout_pub,
        "accepted",
        NOW + 150,
        key_id=3,
        g2s_key=g2s,
        blacklist=["rm"],
        heartbeat=10.0,
        message="hi",
    )
    got_welcome = over_the_wire(signed_welcome)
    assert isinstance(got_welcome, m.Signed)
    welcome, g2s_at_scout = hs.open_welcome(got_welcome, pinned, nonce, scout_keys, HOST)
    assert welcome.status == "accepted"
    assert welcome.key_id == 3
    assert welcome.blacklist == ["rm"]
    assert welcome.heartbeat == 10.0
    assert welcome.message == "hi"
    assert g2s_at_scout == g2s

    # The two ends now talk sealed: General->scout under the derived key, scout->General under C.
    general = SealedChannel(HOST, GENERAL_TO_SCOUT, g2s, c_at_general, send_key_id=3)
    scout = SealedChannel(HOST, SCOUT_TO_GENERAL, scout_c, g2s_at_scout, recv_key_id=3)
    task = m.Task(task_id="t", job_id="j", kind="ping", timeout=5.0)
    assert scout.open(general.seal(task)) == task
    assert general.open(scout.seal(m.Ack(task_id="t"))) == m.Ack(task_id="t")


def test_the_cluster_secret_never_travels(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    b, c = new_session_key(), new_session_key()
    sh = hs.server_hello(general_keys, NOW)
    signed_hello, nonce = hs.build_hello(scout_keys, HOST, FACTS, sh, c, NOW)
    hello, scout_pub, _ = hs.open_hello(signed_hello, sh.challenge, general_keys, NOW)
    welcome = hs.build_welcome(
        general_keys, hello, scout_pub, "accepted", NOW, g2s_key=hs.scout_key_for(b, c, HOST)
    )
    _, key = hs.open_welcome(welcome, general_keys.public, nonce, scout_keys, HOST)
    assert key != b
    assert b not in m.encode(welcome) and b not in m.encode(signed_hello)
    assert c not in m.encode(signed_hello)  # C travels wrapped only


def test_challenges_and_nonces_are_fresh(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    first, second = hs.server_hello(general_keys, NOW), hs.server_hello(general_keys, NOW)
    assert first.challenge != second.challenge
    sh = hs.server_hello(general_keys, NOW)
    c = new_session_key()
    _, n1 = hs.build_hello(scout_keys, HOST, FACTS, sh, c, NOW)
    _, n2 = hs.build_hello(scout_keys, HOST, FACTS, sh, c, NOW)
    assert n1 != n2


# ---------------------------------------------------------------- statuses


@pytest.fixture()
def opened(general_keys: KeyPair, scout_keys: KeyPair) -> tuple[m.Hello, PublicKey, bytes, bytes]:
    """A checked Hello: (hello, scout public key, C, the nonce the scout remembers)."""
    sh = hs.server_hello(general_keys, NOW)
    c = new_session_key()
    signed, nonce = hs.build_hello(scout_keys, HOST, FACTS, sh, c, NOW)
    hello, scout_pub, c_got = hs.open_hello(signed, sh.challenge, general_keys, NOW)
    return hello, scout_pub, c_got, nonce


@pytest.mark.parametrize("status", ["pending", "rejected", "denied"])
def test_statuses_without_a_key(
    general_keys: KeyPair,
    scout_keys: KeyPair,
    opened: tuple[m.Hello, PublicKey, bytes, bytes],
    status: str,
) -> None:
    hello, scout_pub, _, nonce = opened
    signed = hs.build_welcome(general_keys, hello, scout_pub, status, NOW, message="wait")
    welcome, key = hs.open_welcome(signed, general_keys.public, nonce, scout_keys, HOST)
    assert welcome.status == status
    assert welcome.wrapped_key == b""
    assert key == b""


def test_pending_then_a_second_welcome_on_the_same_connection(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, c, nonce = opened
    first = hs.build_welcome(general_keys, hello, scout_pub, "pending", NOW)
    welcome, key = hs.open_welcome(first, general_keys.public, nonce, scout_keys, HOST)
    assert (welcome.status, key) == ("pending", b"")

    # Later an operator accepts the key; the same connection gets a second Welcome that echoes
    # the same nonce, now carrying the General->scout key.
    g2s = hs.scout_key_for(new_session_key(), c, HOST)
    second = hs.build_welcome(general_keys, hello, scout_pub, "accepted", NOW + 60_000, g2s_key=g2s)
    welcome, key = hs.open_welcome(second, general_keys.public, nonce, scout_keys, HOST)
    assert (welcome.status, key) == ("accepted", g2s)


def test_build_welcome_refuses_an_unknown_status(
    general_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, _, _ = opened
    with pytest.raises(ValueError):
        hs.build_welcome(general_keys, hello, scout_pub, "maybe", NOW)


def test_signed_welcome_with_an_unknown_status_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    _, _, _, nonce = opened
    body = m.encode(m.Welcome(status="maybe", hostname=HOST, nonce=nonce, ts=NOW))
    with pytest.raises(HandshakeError, match="status"):
        hs.open_welcome(resign(body, general_keys), general_keys.public, nonce, scout_keys, HOST)


def test_accepted_without_a_key_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, _, nonce = opened
    signed = hs.build_welcome(general_keys, hello, scout_pub, "accepted", NOW)  # no g2s_key
    with pytest.raises(HandshakeError):
        hs.open_welcome(signed, general_keys.public, nonce, scout_keys, HOST)


def test_accepted_with_a_key_of_the_wrong_size_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, _, nonce = opened
    signed = hs.build_welcome(general_keys, hello, scout_pub, "accepted", NOW, g2s_key=b"k" * 16)
    with pytest.raises(HandshakeError, match="wrong size"):
        hs.open_welcome(signed, general_keys.public, nonce, scout_keys, HOST)


# ---------------------------------------------------------------- the General checks the Hello


def test_hello_signed_by_another_key_than_the_one_inside(
    general_keys: KeyPair, scout_keys: KeyPair, other_scout_keys: KeyPair
) -> None:
    sh = hs.server_hello(general_keys, NOW)
    signed, _ = hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW)
    forged = resign(signed.body, other_scout_keys)
    with pytest.raises(HandshakeError, match="signature"):
        hs.open_hello(forged, sh.challenge, general_keys, NOW)


def test_hello_with_a_tampered_body_refused(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    sh = hs.server_hello(general_keys, NOW)
    signed, _ = hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW)
    fields = hello_fields(signed)
    fields["facts"] = {"os": "windows"}
    tampered = m.Signed(body=msgspec.msgpack.encode(fields), signature=signed.signature)
    with pytest.raises(HandshakeError, match="signature"):
        hs.open_hello(tampered, sh.challenge, general_keys, NOW)


def test_hello_with_the_wrong_challenge_refused(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    sh = hs.server_hello(general_keys, NOW)
    signed, _ = hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW)
    other_challenge = hs.server_hello(general_keys, NOW).challenge
    with pytest.raises(HandshakeError, match="challenge"):
        hs.open_hello(signed, other_challenge, general_keys, NOW)


def test_a_recorded_hello_cannot_be_replayed_on_a_new_connection(
    general_keys: KeyPair, scout_keys: KeyPair
) -> None:
    first = hs.server_hello(general_keys, NOW)
    recorded, _ = hs.build_hello(scout_keys, HOST, FACTS, first, new_session_key(), NOW)
    second = hs.server_hello(general_keys, NOW + 1_000)
    with pytest.raises(HandshakeError, match="challenge"):
        hs.open_hello(recorded, second.challenge, general_keys, NOW + 1_000)


@pytest.mark.parametrize("skew_ms", [120_001, -120_001, 86_400_000])
def test_hello_with_a_stale_timestamp_refused(
    general_keys: KeyPair, scout_keys: KeyPair, skew_ms: int
) -> None:
    sh = hs.server_hello(general_keys, NOW)
    signed, _ = hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW + skew_ms)
    with pytest.raises(HandshakeError, match="timestamp"):
        hs.open_hello(signed, sh.challenge, general_keys, NOW)


@pytest.mark.parametrize("skew_ms", [120_000, -120_000, 0])
def test_hello_skew_inside_the_window_accepted(
    general_keys: KeyPair, scout_keys: KeyPair, skew_ms: int
) -> None:
    sh = hs.server_hello(general_keys, NOW)
    signed, _ = hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW + skew_ms)
    hello, _, _ = hs.open_hello(signed, sh.challenge, general_keys, NOW)
    assert hello.ts == NOW + skew_ms


def test_hello_window_is_configurable(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    sh = hs.server_hello(general_keys, NOW)
    signed, _ = hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW + 1_001)
    with pytest.raises(HandshakeError):
        hs.open_hello(signed, sh.challenge, general_keys, NOW, window_ms=1_000)


def signed_hello_for(
    scout: KeyPair, general: KeyPair, challenge: bytes, **overrides: object
) -> m.Signed:
    """A Hello built by hand (to get past build_hello's own checks), validly signed."""
    fields: dict[str, object] = {
        "hostname": HOST,
        "facts": FACTS,
        "scout_key": scout.public.der,
        "wrapped_key": general.public.encrypt(new_session_key()),
        "challenge": challenge,
        "nonce": os.urandom(32),
        "ts": NOW,
    }
    fields.update(overrides)
    body = m.encode(m.Hello(**fields))  # type: ignore[arg-type]
    return resign(body, scout)


@pytest.mark.parametrize(
    "hostname",
    ["", "../x", "a b", "x\x00", "h" * 300, "-leading", ".hidden", "a/b", "a\\b", "wéb", "a\n"],
    ids=repr,
)
def test_invalid_hostnames_refused(
    general_keys: KeyPair, scout_keys: KeyPair, hostname: str
) -> None:
    assert not hs.valid_hostname(hostname)
    challenge = os.urandom(32)
    signed = signed_hello_for(scout_keys, general_keys, challenge, hostname=hostname)
    with pytest.raises(HandshakeError, match="hostname"):
        hs.open_hello(signed, challenge, general_keys, NOW)


@pytest.mark.parametrize(
    "hostname", ["a", "web-01", "web-01.example.com", "WIN_SRV", "h" * 253, "1.2.3.4"]
)
def test_valid_hostnames(hostname: str) -> None:
    assert hs.valid_hostname(hostname)


def test_hello_with_a_weak_scout_key_refused(general_keys: KeyPair) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    challenge = os.urandom(32)
    signed = signed_hello_for(weak, general_keys, challenge)
    with pytest.raises(HandshakeError, match="2048"):
        hs.open_hello(signed, challenge, general_keys, NOW)


def test_hello_with_c_wrapped_for_another_general_refused(
    general_keys: KeyPair, other_general_keys: KeyPair, scout_keys: KeyPair
) -> None:
    challenge = os.urandom(32)
    signed = signed_hello_for(
        scout_keys,
        general_keys,
        challenge,
        wrapped_key=other_general_keys.public.encrypt(new_session_key()),
    )
    with pytest.raises(HandshakeError, match="unwrap"):
        hs.open_hello(signed, challenge, general_keys, NOW)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_hello_with_a_session_key_of_the_wrong_size_refused(
    general_keys: KeyPair, scout_keys: KeyPair, size: int
) -> None:
    challenge = os.urandom(32)
    signed = signed_hello_for(
        scout_keys, general_keys, challenge, wrapped_key=general_keys.public.encrypt(bytes(size))
    )
    with pytest.raises(HandshakeError, match="wrong size"):
        hs.open_hello(signed, challenge, general_keys, NOW)


def test_hello_with_a_tampered_wrapped_key_refused(
    general_keys: KeyPair, scout_keys: KeyPair
) -> None:
    challenge = os.urandom(32)
    wrapped = bytearray(general_keys.public.encrypt(new_session_key()))
    wrapped[10] ^= 0x01
    # Re-signed by the scout itself, so only the OAEP check can catch it.
    signed = signed_hello_for(scout_keys, general_keys, challenge, wrapped_key=bytes(wrapped))
    with pytest.raises(HandshakeError, match="unwrap"):
        hs.open_hello(signed, challenge, general_keys, NOW)


def test_hello_body_that_is_not_a_hello(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    body = m.encode(m.Refused(reason="x"))
    with pytest.raises(DecodeError):
        hs.open_hello(resign(body, scout_keys), os.urandom(32), general_keys, NOW)


def test_build_hello_refuses_a_weak_general_key(scout_keys: KeyPair) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = weak.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sh = m.ServerHello(proto=VERSION, general_key=der, challenge=os.urandom(32), ts=NOW)
    with pytest.raises(HandshakeError):
        hs.build_hello(scout_keys, HOST, FACTS, sh, new_session_key(), NOW)


# ---------------------------------------------------------------- the scout checks the Welcome


def test_welcome_with_the_wrong_nonce_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, _, nonce = opened
    signed = hs.build_welcome(general_keys, hello, scout_pub, "pending", NOW)
    with pytest.raises(HandshakeError, match="not for this hello"):
        hs.open_welcome(signed, general_keys.public, os.urandom(32), scout_keys, HOST)
    hs.open_welcome(signed, general_keys.public, nonce, scout_keys, HOST)  # the right one works


def test_welcome_for_another_hostname_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, _, nonce = opened
    signed = hs.build_welcome(general_keys, hello, scout_pub, "pending", NOW)
    with pytest.raises(HandshakeError, match="not for this hello"):
        hs.open_welcome(signed, general_keys.public, nonce, scout_keys, "web-02.example.com")


def test_welcome_signed_by_another_general_refused(
    general_keys: KeyPair,
    other_general_keys: KeyPair,
    scout_keys: KeyPair,
    opened: tuple[m.Hello, PublicKey, bytes, bytes],
) -> None:
    """Pinning: the scout checks the Welcome against the key it pinned, not the one offered."""
    hello, scout_pub, c, nonce = opened
    g2s = hs.scout_key_for(new_session_key(), c, HOST)
    impostor = hs.build_welcome(other_general_keys, hello, scout_pub, "accepted", NOW, g2s_key=g2s)
    with pytest.raises(HandshakeError, match="signature"):
        hs.open_welcome(impostor, general_keys.public, nonce, scout_keys, HOST)


def test_welcome_with_a_tampered_body_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, _, nonce = opened
    signed = hs.build_welcome(general_keys, hello, scout_pub, "pending", NOW)
    fields = hello_fields(signed)
    fields["status"] = "accepted"
    tampered = m.Signed(body=msgspec.msgpack.encode(fields), signature=signed.signature)
    with pytest.raises(HandshakeError, match="signature"):
        hs.open_welcome(tampered, general_keys.public, nonce, scout_keys, HOST)


def test_welcome_with_a_tampered_wrapped_key_refused(
    general_keys: KeyPair, scout_keys: KeyPair, opened: tuple[m.Hello, PublicKey, bytes, bytes]
) -> None:
    hello, scout_pub, c, nonce = opened
    g2s = hs.scout_key_for(new_session_key(), c, HOST)
    signed = hs.build_welcome(general_keys, hello, scout_pub, "accepted", NOW, g2s_key=g2s)
    fields = hello_fields(signed)
    assert isinstance(fields["wrapped_key"], bytes)
    wrapped = bytearray(fields["wrapped_key"])
    wrapped[0] ^= 0x01
    fields["wrapped_key"] = bytes(wrapped)
    body = msgspec.msgpack.encode(fields)

    # Tampered in transit: the General's signature no longer matches.
    with pytest.raises(HandshakeError, match="signature"):
        hs.open_welcome(
            m.Signed(body=body, signature=signed.signature),
            general_keys.public,
            nonce,
            scout_keys,
            HOST,
        )
    # Even validly signed, a key that does not unwrap is refused.
    with pytest.raises(HandshakeError, match="unwrap"):
        hs.open_welcome(resign(body, general_keys), general_keys.public, nonce, scout_keys, HOST)


def test_welcome_key_wrapped_for_another_scout_refused(
    general_keys: KeyPair,
    scout_keys: KeyPair,
    other_scout_keys: KeyPair,
    opened: tuple[m.Hello, PublicKey, bytes, bytes],
) -> None:
    hello, _, c, nonce = opened
    g2s = hs.scout_key_for(new_session_key(), c, HOST)
    signed = hs.build_welcome(
        general_keys, hello, other_scout_keys.public, "accepted", NOW, g2s_key=g2s
    )
    with pytest.raises(HandshakeError, match="unwrap"):
        hs.open_welcome(signed, general_keys.public, nonce, scout_keys, HOST)


def test_welcome_body_that_is_not_a_welcome(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    body = m.encode(m.Refused(reason="x"))
    with pytest.raises(DecodeError):
        hs.open_welcome(resign(body, general_keys), general_keys.public, b"", scout_keys, HOST)


# ---------------------------------------------------------------- per-scout key derivation


def test_scout_key_is_hkdf_of_b_salted_with_c_for_the_hostname() -> None:
    b, c = new_session_key(), new_session_key()
    expected = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=c, info=b"troop g2s v1 " + HOST.encode()
    ).derive(b)
    assert hs.scout_key_for(b, c, HOST) == expected


def test_scout_key_is_deterministic() -> None:
    b, c = new_session_key(), new_session_key()
    # Every General holding B derives the same key for the same connection.
    assert hs.scout_key_for(b, c, HOST) == hs.scout_key_for(bytes(b), bytes(c), HOST)


def test_different_hostnames_give_different_keys() -> None:
    b, c = new_session_key(), new_session_key()
    assert hs.scout_key_for(b, c, "web-01") != hs.scout_key_for(b, c, "web-02")


def test_different_scout_session_keys_give_different_keys() -> None:
    b = new_session_key()
    assert hs.scout_key_for(b, new_session_key(), HOST) != hs.scout_key_for(
        b, new_session_key(), HOST
    )


def test_different_cluster_secrets_give_different_keys() -> None:
    c = new_session_key()
    assert hs.scout_key_for(new_session_key(), c, HOST) != hs.scout_key_for(
        new_session_key(), c, HOST
    )


def test_scout_key_is_neither_b_nor_c() -> None:
    b, c = new_session_key(), new_session_key()
    key = hs.scout_key_for(b, c, HOST)
    assert len(key) == 32
    assert key not in (b, c)


def test_a_scout_cannot_open_another_scouts_traffic() -> None:
    b = new_session_key()
    c1, c2 = new_session_key(), new_session_key()
    to_web1 = SealedChannel("web-01", GENERAL_TO_SCOUT, hs.scout_key_for(b, c1, "web-01"), c1)
    # web-02 knows its own C and its own derived key, and even claims web-01's name:
    web2 = SealedChannel("web-01", SCOUT_TO_GENERAL, c2, hs.scout_key_for(b, c2, "web-02"))
    with pytest.raises(SealError):
        web2.open(to_web1.seal(m.Task(task_id="t", job_id="j", kind="ping", timeout=1.0)))
