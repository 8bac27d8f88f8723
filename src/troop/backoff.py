"""Reconnect delays: exponential, capped, with full jitter.

Full jitter (a uniform draw between the floor and the current cap) spreads a fleet that
lost its General at the same instant, so a restart is not met by a SYN flood
(Salt learned this in saltstack/salt#6206).
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0, factor: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self._attempt = 0
        self._rand = random.SystemRandom()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * self.factor**self._attempt)
        self._attempt += 1
        return self._rand.uniform(self.first / 2, max(ceiling, self.first / 2))

    def reset(self) -> None:
        self._attempt = 0
