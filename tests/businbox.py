"""A bus handler for tests: records what it gets and lets a test wait for a count."""

from __future__ import annotations

import asyncio


class Inbox:
    """A handler that records what it gets and lets a test wait for a count."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def __call__(self, subject: str, data: bytes) -> None:
        self.got.append((subject, data))
        self._changed.set()

    async def wait(self, count: int, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self._changed.clear()
                await self._changed.wait()

    @property
    def subjects(self) -> list[str]:
        return [subject for subject, _ in self.got]
