"""Item 8, crypto hygiene: randomness from the OS only, nothing hand-rolled, RSA-OAEP and RSA-PSS
with SHA-256, AES-256-GCM, and the General's key pinned on the scout.

No nonce repeats over 10^5 sealed messages: tests/unit/test_crypto.py::test_no_nonce_repeats_over_100k_seals
(and test_nonces_come_from_os_urandom beside it)."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import troop
from tests.security.rawscout import log_text, wait_until
from troop.localfleet import Fleet
from troop.protocol import crypto, messages
from troop.protocol.channel import GENERAL_TO_SCOUT, PREFIX, SCOUT_TO_GENERAL, SealedChannel

SRC = Path(troop.__file__).parent
# The only places `random` may appear, and what for: reconnect jitter (SystemRandom), the
# scout's choice of which General to dial first, and which member of a queue group of the
# in-process bus takes a message. None of them is a secret.
RANDOM_ALLOWED = {
    "backoff.py": {"import random", "random.SystemRandom()"},
    "scout/agent.py": {"import random", "random.randrange(", "random.uniform("},
    "bus/local.py": {"import random", "random.Random()"},
}
HAND_ROLLED = re.compile(
    r"^\s*(import|from)\s+(Crypto|Cryptodome|nacl|pyaes|rsa|ecdsa|pyDes|tinyec|M2Crypto|OpenSSL)\b"
    r"|modes\.(ECB|CBC|CTR|CFB|OFB)\b|hashes\.(MD5|SHA1)\b|\bPKCS1v15\b",
    re.M,
)


def test_randomness_comes_from_the_os_and_nothing_is_hand_rolled() -> None:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text()
        uses = set(re.findall(r"import random\b|from random import|random\.\w+\(?\)?", text))
        uses = {u if not u.startswith("random.") else re.sub(r"\(.*", "(", u) for u in uses}
        allowed = RANDOM_ALLOWED.get(rel, set())
        extra = {u for u in uses if not any(u.startswith(a.rstrip("()")) for a in allowed)}
        assert not extra, f"{rel} uses {sorted(extra)}: keys, nonces and tokens come from os.urandom/secrets"
        assert not HAND_ROLLED.search(text), f"{rel}: crypto from outside `cryptography`, or a weak mode"
    text = (SRC / "protocol" / "crypto.py").read_text()
    assert text.count("os.urandom(") == 3  # random_bytes, new_session_key, the GCM nonce


def test_the_primitives_are_the_documented_ones() -> None:
    """Open troop's output with `cryptography` called directly, with the documented parameters."""
    scout, general = crypto.KeyPair.generate(2048), crypto.KeyPair.generate(2048)
    private = general._key
    assert isinstance(private, rsa.RSAPrivateKey)
    key = crypto.new_session_key()
    assert len(key) == 32  # AES-256
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert private.decrypt(general.public.encrypt(key), oaep) == key
    signature = scout.sign(b"hello")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    scout._key.public_key().verify(signature, b"hello", pss, hashes.SHA256())  # raises if not PSS-SHA256

    channel = SealedChannel("web1", GENERAL_TO_SCOUT, key, crypto.new_session_key())
    body = channel.seal(messages.Heartbeat(ts=1))
    prefix, nonce, sealed = body[: PREFIX.size], body[PREFIX.size : PREFIX.size + 12], body[PREFIX.size + 12 :]
    plain = AESGCM(key).decrypt(nonce, sealed, prefix + GENERAL_TO_SCOUT + b"web1")  # AES-256-GCM, 16-byte tag
    assert messages.decode_sealed(plain) == messages.Heartbeat(ts=1)
    assert len(sealed) == len(plain) + 16
    assert SCOUT_TO_GENERAL != GENERAL_TO_SCOUT


def test_scout_refuses_a_general_whose_key_changed(tmp_path: Path) -> None:
    """A scout that met General A refuses General B on the same address, and runs none of its tasks."""
    quick = {"TROOP_RECONNECT_MIN": "0.1", "TROOP_RECONNECT_MAX": "0.5", "TROOP_KEY_BITS": "2048"}
    first = Fleet(tmp_path / "a", env=quick)
    second = Fleet(tmp_path / "b", scout_port=first.scout_port, env=quick)
    log = first.root / "scout-pin1.log"
    try:
        first.start_general()
        first.start_scout("pin1")
        first.wait_online(["pin1"])
        pinned = (first.root / "scouts" / "pin1" / "general.pin").read_text().strip()
        first.stop_general()
        connected = log_text(log).count("connected to the General")

        second.start_general()  # another data dir: another key, same address
        wait_until(lambda: "the General's key changed" in log_text(log), 15, "the pin error")
        assert f"pinned {pinned}" in log_text(log)
        result = second.cli("ping", "pin1")
        assert result.returncode == 2 and "pin1" in result.stderr
        assert second.api("GET", "/api/v1/hosts")["hosts"] == []  # the scout never said Hello to B
        assert second.api("GET", "/api/v1/jobs")["jobs"] == []
        assert "new scout key" not in log_text(second.root / "general.log")
        assert log_text(log).count("connected to the General") == connected
        # It keeps trying (it is not wedged), and keeps refusing.
        wait_until(lambda: log_text(log).count("the General's key changed") >= 2, 15, "a second refusal")
        assert first.scouts["pin1"].poll() is None
    finally:
        first.stop()
        second.stop()
