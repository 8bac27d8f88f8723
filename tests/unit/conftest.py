"""Shared fixtures of the unit tests.

RSA key generation costs tens of milliseconds at 2048 bits, so the key pairs are made once per
test session and shared; tests never mutate them.

The CLI's tests get a fake General's HTTP API (tests/unit/fakeapi.py) from `api`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.fakeapi import FakeApi, serve
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


@pytest.fixture
def fake_api() -> FakeApi:
    """The fake API's state before a test; a test module overrides this for other defaults."""
    return FakeApi()


@pytest.fixture
def api(fake_api: FakeApi) -> Iterator[FakeApi]:
    """The fake API of tests/unit/fakeapi.py, served on port 0 for the length of a test."""
    with serve(fake_api) as served:
        yield served
