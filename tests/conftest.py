"""Fixtures shared by every tier: the real servers the integration tests need."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.missing import no_server
from tests.services import start_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL admin URL: TROOP_TEST_PG_URL if set, else a server started for this run."""
    given = os.environ.get("TROOP_TEST_PG_URL")
    if given:
        yield given
        return
    try:
        server = start_postgres()
    except RuntimeError as exc:
        no_server(str(exc))
    try:
        yield server.url
    finally:
        server.stop()
