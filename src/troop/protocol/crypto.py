"""The primitives, all from `cryptography`: RSA-OAEP and RSA-PSS (SHA-256), AES-256-GCM, HKDF.

Keys and nonces come from the OS random source only (os.urandom). Nothing here reads or
writes files: callers hand in PEM/DER bytes and store what they get back.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from troop.protocol.errors import HandshakeError, SealError

KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12  # GCM standard nonce
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384  # OpenSSL's limit: larger moduli load, but cannot encrypt

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def new_session_key() -> bytes:
    return os.urandom(KEY_SIZE)


def derive_key(secret: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 to one AES-256 key."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(secret)


def fingerprint(public_der: bytes) -> str:
    # cryptography's SHA-256, not hashlib: hashlib would load a second libcrypto into the scout.
    digest = hashes.Hash(hashes.SHA256())
    digest.update(public_der)
    return "sha256:" + digest.finalize().hex()


class PublicKey:
    def __init__(self, key: rsa.RSAPublicKey) -> None:
        self._key = key
        self.der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.fingerprint = fingerprint(self.der)

    @classmethod
    def from_der(cls, der: bytes) -> PublicKey:
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise HandshakeError(f"not a public key: {exc}") from exc
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            raise HandshakeError(f"an RSA key of at least {MIN_RSA_BITS} bits is required")
        if key.key_size > MAX_RSA_BITS:
            raise HandshakeError(f"RSA keys over {MAX_RSA_BITS} bits are not supported")
        return cls(key)

    def encrypt(self, data: bytes) -> bytes:
        return self._key.encrypt(data, _OAEP)

    def verify(self, signature: bytes, data: bytes) -> None:
        try:
            self._key.verify(signature, data, _PSS, hashes.SHA256())
        except InvalidSignature as exc:
            raise HandshakeError("bad signature") from exc


class KeyPair:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self.public = PublicKey(key.public_key())

    @classmethod
    def generate(cls, bits: int = 3072) -> KeyPair:
        if bits < MIN_RSA_BITS:
            raise ValueError(f"RSA keys under {MIN_RSA_BITS} bits are refused")
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def from_pem(cls, pem: bytes) -> KeyPair:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, _PSS, hashes.SHA256())

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._key.decrypt(data, _OAEP)
        except ValueError as exc:
            raise HandshakeError("cannot unwrap key") from exc


class SessionCipher:
    """AES-256-GCM with a fresh random nonce per message."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("AES-256 needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE_SIZE)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def seal_with_nonce(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """For callers whose nonces are unique by construction (one key, one stream)."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise SealError("message failed authentication") from exc
