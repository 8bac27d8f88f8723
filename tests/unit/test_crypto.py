"""Crypto primitives: RSA-OAEP, RSA-PSS, key size policy, AES-256-GCM, HKDF, fingerprints."""

from __future__ import annotations

import hashlib
import os
import re
import secrets

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from troop.protocol.crypto import (
    KEY_SIZE,
    MIN_RSA_BITS,
    NONCE_SIZE,
    KeyPair,
    PublicKey,
    SessionCipher,
    derive_key,
    fingerprint,
    new_session_key,
)
from troop.protocol.errors import HandshakeError, ProtocolError, SealError


def spki_der(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------- RSA-OAEP


def test_oaep_wrap_unwrap(general_keys: KeyPair) -> None:
    secret = new_session_key()
    wrapped = general_keys.public.encrypt(secret)
    assert wrapped != secret
    assert len(wrapped) == 2048 // 8
    assert general_keys.decrypt(wrapped) == secret


def test_oaep_is_randomised(general_keys: KeyPair) -> None:
    secret = new_session_key()
    assert general_keys.public.encrypt(secret) != general_keys.public.encrypt(secret)


def test_oaep_unwrap_with_the_wrong_key_fails(general_keys: KeyPair, scout_keys: KeyPair) -> None:
    wrapped = general_keys.public.encrypt(new_session_key())
    with pytest.raises(HandshakeError):
        scout_keys.decrypt(wrapped)


@pytest.mark.parametrize("position", [0, 100, 255])
def test_oaep_tampered_ciphertext_fails(general_keys: KeyPair, position: int) -> None:
    wrapped = bytearray(general_keys.public.encrypt(new_session_key()))
    wrapped[position] ^= 0x01
    with pytest.raises(HandshakeError):
        general_keys.decrypt(bytes(wrapped))


@pytest.mark.parametrize("junk", [b"", b"short", bytes(256), bytes(512)])
def test_oaep_unwrap_of_junk_fails_cleanly(general_keys: KeyPair, junk: bytes) -> None:
    with pytest.raises(HandshakeError):
        general_keys.decrypt(junk)


# ---------------------------------------------------------------- RSA-PSS


def test_pss_sign_verify(scout_keys: KeyPair) -> None:
    data = b"the exact bytes of a Hello"
    signature = scout_keys.sign(data)
    scout_keys.public.verify(signature, data)  # does not raise


def test_pss_is_randomised(scout_keys: KeyPair) -> None:
    assert scout_keys.sign(b"x") != scout_keys.sign(b"x")


def test_pss_signature_over_other_data_refused(scout_keys: KeyPair) -> None:
    signature = scout_keys.sign(b"pay alice 1")
    with pytest.raises(HandshakeError, match="bad signature"):
        scout_keys.public.verify(signature, b"pay alice 9")


def test_pss_signature_by_another_key_refused(
    scout_keys: KeyPair, other_scout_keys: KeyPair
) -> None:
    signature = other_scout_keys.sign(b"data")
    with pytest.raises(HandshakeError, match="bad signature"):
        scout_keys.public.verify(signature, b"data")


@pytest.mark.parametrize("position", [0, 128, 255])
def test_pss_tampered_signature_refused(scout_keys: KeyPair, position: int) -> None:
    signature = bytearray(scout_keys.sign(b"data"))
    signature[position] ^= 0x80
    with pytest.raises(HandshakeError):
        scout_keys.public.verify(bytes(signature), b"data")


@pytest.mark.parametrize("signature", [b"", b"\x00", bytes(256), bytes(1024)])
def test_pss_junk_signature_refused(scout_keys: KeyPair, signature: bytes) -> None:
    with pytest.raises(HandshakeError):
        scout_keys.public.verify(signature, b"data")


# ---------------------------------------------------------------- key policy and encoding


def test_public_key_der_round_trip(scout_keys: KeyPair) -> None:
    again = PublicKey.from_der(scout_keys.public.der)
    assert again.der == scout_keys.public.der
    assert again.fingerprint == scout_keys.public.fingerprint
    again.verify(scout_keys.sign(b"m"), b"m")


def test_private_key_pem_round_trip(scout_keys: KeyPair) -> None:
    pem = scout_keys.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = KeyPair.from_pem(pem)
    assert again.public.der == scout_keys.public.der
    assert again.decrypt(scout_keys.public.encrypt(b"k" * 32)) == b"k" * 32


def test_from_pem_refuses_a_non_rsa_key() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="RSA"):
        KeyPair.from_pem(pem)


def test_1024_bit_key_refused_by_from_der() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(HandshakeError, match=str(MIN_RSA_BITS)):
        PublicKey.from_der(spki_der(weak.public_key()))


def test_generating_a_small_key_refused() -> None:
    with pytest.raises(ValueError):
        KeyPair.generate(1024)


def test_default_generated_key_size_is_3072() -> None:
    # The bits argument is what we check; generating a 3072-bit key here would cost ~0.3 s.
    assert KeyPair.generate.__defaults__ == (3072,)


def test_non_rsa_keys_refused_by_from_der() -> None:
    for key in (
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
    ):
        with pytest.raises(HandshakeError):
            PublicKey.from_der(spki_der(key))


def _spki(algorithm: bytes, bits: bytes) -> bytes:
    """A DER SubjectPublicKeyInfo from an encoded AlgorithmIdentifier body and key bytes."""
    alg = b"\x30" + bytes([len(algorithm)]) + algorithm
    bitstr = b"\x03" + bytes([len(bits) + 1]) + b"\x00" + bits
    return b"\x30" + bytes([len(alg) + len(bitstr)]) + alg + bitstr


@pytest.mark.parametrize(
    "der",
    [
        # an algorithm OID nobody knows (1.2.3.4)
        _spki(b"\x06\x03\x2a\x03\x04", b"\x01\x02"),
        # an EC key on a curve `cryptography` does not support (secp112r1)
        _spki(
            bytes.fromhex("06072a8648ce3d0201") + bytes.fromhex("06052b81040006"),
            b"\x04" + b"\x01" * 28,
        ),
    ],
    ids=["unknown-algorithm", "unsupported-curve"],
)
def test_unsupported_key_types_are_a_handshake_error(der: bytes) -> None:
    # cryptography raises UnsupportedAlgorithm (not a ValueError) for these: it must not escape,
    # because Hello.scout_key and ServerHello.general_key come from an unauthenticated peer.
    with pytest.raises(HandshakeError):
        PublicKey.from_der(der)


def test_absurdly_large_rsa_key_refused() -> None:
    # OpenSSL cannot use RSA moduli over 16384 bits (encrypt fails with a bare ValueError), so such
    # a key must be refused when it is loaded, as a HandshakeError.
    n = secrets.randbits(16400) | (1 << 16399) | 1
    key = rsa.RSAPublicNumbers(65537, n).public_key()
    with pytest.raises(HandshakeError):
        PublicKey.from_der(spki_der(key))


def test_rsa_key_at_the_upper_limit_accepted() -> None:
    n = secrets.randbits(16384) | (1 << 16383) | 1
    key = PublicKey.from_der(spki_der(rsa.RSAPublicNumbers(65537, n).public_key()))
    assert len(key.encrypt(b"k" * 32)) == 16384 // 8


@pytest.mark.parametrize("junk", [b"", b"\x30", b"\x30\x00", os.urandom(64), b"-----BEGIN"])
def test_junk_der_refused(junk: bytes) -> None:
    with pytest.raises(HandshakeError, match="not a public key"):
        PublicKey.from_der(junk)


# ---------------------------------------------------------------- fingerprints


def test_fingerprint_format(scout_keys: KeyPair) -> None:
    fp = scout_keys.public.fingerprint
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fp)
    assert fp == "sha256:" + hashlib.sha256(scout_keys.public.der).hexdigest()
    assert fp == fingerprint(scout_keys.public.der)


def test_fingerprints_differ_between_keys(scout_keys: KeyPair, general_keys: KeyPair) -> None:
    assert scout_keys.public.fingerprint != general_keys.public.fingerprint


# ---------------------------------------------------------------- AES-256-GCM


def test_session_key_size() -> None:
    assert KEY_SIZE == 32
    key = new_session_key()
    assert len(key) == 32
    assert key != new_session_key()


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33])
def test_session_cipher_refuses_other_key_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        SessionCipher(bytes(size))


def test_seal_open_round_trip() -> None:
    cipher = SessionCipher(new_session_key())
    nonce, ct = cipher.seal(b"plain text", b"aad")
    assert len(nonce) == NONCE_SIZE == 12
    assert len(ct) == len(b"plain text") + 16
    assert b"plain text" not in ct
    assert cipher.open(nonce, ct, b"aad") == b"plain text"


def test_open_with_another_key_fails() -> None:
    nonce, ct = SessionCipher(new_session_key()).seal(b"m", b"aad")
    with pytest.raises(SealError):
        SessionCipher(new_session_key()).open(nonce, ct, b"aad")


def test_tampering_is_detected_everywhere() -> None:
    cipher = SessionCipher(new_session_key())
    aad = b"associated data"
    nonce, ct = cipher.seal(b"attack at dawn", aad)
    for i in range(len(ct)):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        with pytest.raises(SealError):
            cipher.open(nonce, bytes(bad), aad)
    for i in range(len(nonce)):
        bad_nonce = bytearray(nonce)
        bad_nonce[i] ^= 0x01
        with pytest.raises(SealError):
            cipher.open(bytes(bad_nonce), ct, aad)
    for i in range(len(aad)):
        bad_aad = bytearray(aad)
        bad_aad[i] ^= 0x01
        with pytest.raises(SealError):
            cipher.open(nonce, ct, bytes(bad_aad))
    with pytest.raises(SealError):
        cipher.open(nonce, ct[:-1], aad)
    with pytest.raises(SealError):
        cipher.open(nonce, ct + b"\x00", aad)
    with pytest.raises(SealError):
        cipher.open(nonce, ct, aad + b"x")
    assert cipher.open(nonce, ct, aad) == b"attack at dawn"


def test_seal_error_is_a_protocol_error() -> None:
    assert issubclass(SealError, ProtocolError)


def test_nonces_come_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def spy(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", spy)  # crypto looks it up on every call
    cipher = SessionCipher(bytes(32))
    cipher.seal(b"m", b"")
    assert calls == [NONCE_SIZE]
    assert len(new_session_key()) == KEY_SIZE
    assert calls == [NONCE_SIZE, KEY_SIZE]


def test_no_nonce_repeats_over_100k_seals() -> None:
    cipher = SessionCipher(new_session_key())
    count = 100_000
    nonces = {cipher.seal(b"", b"")[0] for _ in range(count)}
    assert len(nonces) == count


# ---------------------------------------------------------------- HKDF


def test_derive_key_is_hkdf_sha256() -> None:
    secret, salt, info = os.urandom(32), os.urandom(32), b"troop test"
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)
    assert derive_key(secret, salt, info) == expected
    assert len(expected) == KEY_SIZE


def test_derive_key_depends_on_every_input() -> None:
    secret, salt, info = os.urandom(32), os.urandom(32), b"info"
    base = derive_key(secret, salt, info)
    assert derive_key(secret, salt, info) == base
    assert derive_key(os.urandom(32), salt, info) != base
    assert derive_key(secret, os.urandom(32), info) != base
    assert derive_key(secret, salt, b"other") != base
