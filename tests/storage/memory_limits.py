"""An in-process RateLimiter for the gateway's policy tests. It passes the same contract suite
as the Redis adapter (tests/storage/test_rate_limits.py), so tests that use it test the policy,
not the fake. ``down = True`` makes every call raise StoreUnavailable, as an outage would.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from storage.errors import StoreUnavailable
from storage.ports import Verdict


class MemoryLimits:
    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}      # key -> (tokens, at_ms)
        self._slots: dict[str, dict[str, float]] = {}            # key -> holder -> lease end (ms)
        self.down = False
        self.calls: list[tuple[str, str]] = []                   # (method, key), for the tests

    def _now(self, method: str, key: str) -> float:
        if self.down:
            raise StoreUnavailable("memory limiter is down")
        self.calls.append((method, key))
        return math.floor(self._clock() * 1000)

    async def take(self, key: str, burst: int, per_s: float, cost: int = 1) -> Verdict:
        if not 1 <= cost <= burst:
            raise ValueError(f"cost must be 1..burst, got {cost}")
        return self._bucket("take", key, burst, per_s, cost)

    async def give_back(self, key: str, burst: int, per_s: float, amount: int = 1) -> None:
        self._bucket("give_back", key, burst, per_s, -amount)

    def _bucket(self, method: str, key: str, burst: int, per_s: float, cost: int) -> Verdict:
        now, rate = self._now(method, key), per_s / 1000
        tokens, at = self._buckets.get(key, (burst, now))
        if now > at:
            tokens, at = tokens + (now - at) * rate, now
        tokens = min(burst, tokens)
        if cost > 0 and tokens < cost:
            return Verdict(False, max(1, math.ceil((cost - tokens) / rate)), math.floor(tokens))
        tokens = min(burst, tokens - cost)
        self._buckets[key] = (tokens, at)
        return Verdict(True, 0, math.floor(tokens))

    async def hold(self, key: str, holder: str, limit: int, lease_s: float) -> Verdict:
        now = self._now("hold", key)
        slots = {h: end for h, end in self._slots.get(key, {}).items() if end > now}
        self._slots[key] = slots
        if holder not in slots and len(slots) >= limit:
            return Verdict(False, max(1, math.ceil(min(slots.values()) - now)), 0)
        slots[holder] = now + math.ceil(lease_s * 1000)
        return Verdict(True, 0, limit - len(slots))

    async def renew(self, slots: Sequence[tuple[str, str]], lease_s: float) -> None:
        if not slots:
            return
        now = self._now("renew", "")
        for key, holder in slots:
            held = self._slots.get(key, {})
            if held.get(holder, 0) > now:
                held[holder] = now + math.ceil(lease_s * 1000)

    async def release(self, key: str, holder: str) -> None:
        self._now("release", key)
        self._slots.get(key, {}).pop(holder, None)
