"""What a test does when a real server it needs (PostgreSQL, nats-server) cannot run here."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def no_server(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI, where a missing server is a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
