"""Shared fixtures of the unit tests.

RSA key generation costs tens of milliseconds at 2048 bits, so the key pairs are made once per
test session and shared; tests never mutate them.
"""

from __future__ import annotations

import pytest

from troop.protocol.crypto import KeyPair

TEST_RSA_BITS = 2048  # the smallest size the protocol accepts: fast, and still a real key


@pytest.fixture(scope="session")
def general_keys() -> KeyPair:
    """The General's RSA key pair."""
    return KeyPair.generate(TEST_RSA_BITS)


@pytest.fixture(scope="session")
def other_general_keys() -> KeyPair:
    """A second General key: an impostor, or a General whose key changed."""
    return KeyPair.generate(TEST_RSA_BITS)


@pytest.fixture(scope="session")
def scout_keys() -> KeyPair:
    """The scout's RSA key pair."""
    return KeyPair.generate(TEST_RSA_BITS)


@pytest.fixture(scope="session")
def other_scout_keys() -> KeyPair:
    """A second scout key: an impostor claiming the first scout's identity."""
    return KeyPair.generate(TEST_RSA_BITS)
