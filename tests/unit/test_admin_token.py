"""The first admin token of a store: made once, even by Generals of a cluster starting together."""

from __future__ import annotations

import asyncio
from pathlib import Path

from troop.general.auth import TokenService
from troop.store import Store


async def test_two_generals_starting_at_once_make_one_admin_token(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'troop.db'}")
    try:
        dirs = [tmp_path / "g1", tmp_path / "g2"]
        for d in dirs:
            d.mkdir()
        real_count = store.count_tokens

        async def empty_when_looked() -> int:
            return 0  # both Generals looked at the store before either had written

        store.count_tokens = empty_when_looked  # type: ignore[method-assign]
        made = await asyncio.gather(*(TokenService(store).ensure_admin(d) for d in dirs))
        store.count_tokens = real_count  # type: ignore[method-assign]
        assert len([p for p in made if p is not None]) == 1
        assert await store.count_tokens() == 1
        written = next(p for p in made if p is not None)
        assert written.stat().st_mode & 0o777 == 0o600
        assert await TokenService(store).ensure_admin(tmp_path) is None  # and never again
    finally:
        await store.close()
