"""The handshake, as pure functions: build and check each of its three messages.

1. General -> scout  ServerHello: the General's public key and a fresh challenge.
2. scout -> General  Signed(Hello): hostname, facts, the scout's public key, the scout's session
   key C wrapped for the General (RSA-OAEP), the challenge, a nonce; signed with RSA-PSS.
3. General -> scout  Signed(Welcome): the status and, once accepted, the scout's
   General->scout key wrapped for the scout; echoes the nonce; signed by the General.

Who is accepted is not decided here (that is troop.general.keys); this only proves who is who.
"""

from __future__ import annotations

from troop.protocol import messages
from troop.protocol.crypto import KEY_SIZE, KeyPair, PublicKey, derive_key, random_bytes
from troop.protocol.errors import HandshakeError
from troop.protocol.frames import VERSION

CHALLENGE_SIZE = 32
MAX_HOSTNAME = 253
DEFAULT_WINDOW_MS = 120_000
STATUSES = frozenset({"accepted", "pending", "rejected", "denied"})


def server_hello(general: KeyPair, now: int) -> messages.ServerHello:
    return messages.ServerHello(
        proto=VERSION, general_key=general.public.der, challenge=random_bytes(CHALLENGE_SIZE), ts=now
    )


def build_hello(
    scout: KeyPair,
    hostname: str,
    facts: messages.Facts,
    hello: messages.ServerHello,
    session_key: bytes,
    now: int,
    holding: list[str] | None = None,
) -> tuple[messages.Signed, bytes]:
    """Return the signed Hello and the nonce the Welcome must echo."""
    general = PublicKey.from_der(hello.general_key)
    nonce = random_bytes(CHALLENGE_SIZE)
    body = messages.encode(
        messages.Hello(
            hostname=hostname,
            facts=facts,
            scout_key=scout.public.der,
            wrapped_key=general.encrypt(session_key),
            challenge=hello.challenge,
            nonce=nonce,
            ts=now,
            holding=holding or [],
        )
    )
    return messages.Signed(body=body, signature=scout.sign(body)), nonce


def open_hello(
    signed: messages.Signed,
    challenge: bytes,
    general: KeyPair,
    now: int,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> tuple[messages.Hello, PublicKey, bytes]:
    """Check a scout's Hello; return it, the scout's public key and its session key C."""
    hello = messages.decode_hello(signed.body)
    if not valid_hostname(hello.hostname):
        raise HandshakeError(f"invalid hostname {hello.hostname[:64]!r}")
    scout_key = PublicKey.from_der(hello.scout_key)
    scout_key.verify(signed.signature, signed.body)
    # The challenge and nonce are public (they crossed the wire in the clear), so a plain
    # comparison leaks nothing; the signature over them is what proves freshness.
    if hello.challenge != challenge:
        raise HandshakeError("challenge mismatch")
    if abs(now - hello.ts) > window_ms:
        raise HandshakeError("hello timestamp outside the window")
    session_key = general.decrypt(hello.wrapped_key)
    if len(session_key) != KEY_SIZE:
        raise HandshakeError("session key has the wrong size")
    return hello, scout_key, session_key


def scout_key_for(general_secret: bytes, scout_session_key: bytes, hostname: str) -> bytes:
    """The per-scout General->scout key: the cluster secret B never leaves the Generals."""
    return derive_key(general_secret, scout_session_key, b"troop g2s v1 " + hostname.encode())


def build_welcome(
    general: KeyPair,
    hello: messages.Hello,
    scout_key: PublicKey,
    status: str,
    now: int,
    *,
    key_id: int = 0,
    g2s_key: bytes = b"",
    blacklist: list[str] | None = None,
    heartbeat: float = 15.0,
    message: str = "",
) -> messages.Signed:
    if status not in STATUSES:
        raise ValueError(status)
    body = messages.encode(
        messages.Welcome(
            status=status,
            hostname=hello.hostname,
            nonce=hello.nonce,
            ts=now,
            key_id=key_id,
            wrapped_key=scout_key.encrypt(g2s_key) if g2s_key else b"",
            blacklist=list(blacklist or []),
            heartbeat=heartbeat,
            message=message,
        )
    )
    return messages.Signed(body=body, signature=general.sign(body))


def open_welcome(
    signed: messages.Signed, general_key: PublicKey, nonce: bytes, scout: KeyPair, hostname: str
) -> tuple[messages.Welcome, bytes]:
    """Check a Welcome; return it and, when accepted, the unwrapped General->scout key."""
    general_key.verify(signed.signature, signed.body)
    welcome = messages.decode_welcome(signed.body)
    if welcome.nonce != nonce or welcome.hostname != hostname:
        raise HandshakeError("welcome is not for this hello")
    if welcome.status not in STATUSES:
        raise HandshakeError(f"unknown status {welcome.status!r}")
    key = b""
    if welcome.status == "accepted":
        key = scout.decrypt(welcome.wrapped_key)
        if len(key) != KEY_SIZE:
            raise HandshakeError("General->scout key has the wrong size")
    return welcome, key


def open_rekey(rekey: messages.Rekey, scout: KeyPair) -> bytes:
    """Unwrap a re-key's new General->scout key, refusing one of the wrong size."""
    key = scout.decrypt(rekey.wrapped_key)
    if len(key) != KEY_SIZE:
        raise HandshakeError("re-key carries a key of the wrong size")
    return key


def valid_hostname(name: str) -> bool:
    """Hostnames as DNS allows them, plus '_': no path separators, no spaces, no control bytes."""
    if not name or len(name) > MAX_HOSTNAME or name.startswith(("-", ".")):
        return False
    return all(c.isascii() and (c.isalnum() or c in "-._") for c in name)


__all__ = [
    "build_hello",
    "build_welcome",
    "open_hello",
    "open_rekey",
    "open_welcome",
    "scout_key_for",
    "server_hello",
    "valid_hostname",
]
