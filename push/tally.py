"""Push job outcomes counted cluster-wide, in one Redis hash every push worker adds to.

A worker is a Serve replica with no route, so nothing can scrape it; instead it adds what it
settled since its last step (one HINCRBY per outcome, one round trip), and any gateway's
``GET /metrics`` reads the hash (HGETALL) as ``raychat_push_jobs_total{outcome}``. The counts
survive worker restarts, as a Prometheus counter should. Delivery is at least once, so a job
handled twice (its worker died before settling) counts twice.

    {prefix}outcomes    HASH outcome -> count
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

from raychat.metrics import PUSH_OUTCOMES
from storage.redis_store import connect, redis_errors

# PushWorker.stats keys -> the outcome they count as (``dropped_<platform>_off`` -> dropped).
_STAT_OUTCOMES = {"delivered": "delivered", "retried": "retried", "dead_lettered": "dead",
                  "invalid_tokens": "invalid_token", "collapsed": "collapsed", "skipped_online": "skipped_online",
                  "deferred": "deferred"}


def outcome_of(stat: str) -> str | None:
    """The outcome a worker stats key counts towards, or None (claimed, expanded, errors…)."""
    if stat.startswith("dropped_"):
        return "dropped"
    return _STAT_OUTCOMES.get(stat)


def outcomes(stats: Mapping[str, int]) -> Counter[str]:
    """Worker stats summed by outcome."""
    out: Counter[str] = Counter()
    for stat, n in stats.items():
        outcome = outcome_of(stat)
        if outcome is not None:
            out[outcome] += n
    return out


class OutcomeTally:
    def __init__(self, url: str, *, timeout_s: float = 3.0, prefix: str = "raychat:push:"):
        self._timeout_s = timeout_s
        self._redis = connect(url, timeout_s)
        self.key = f"{prefix}outcomes"

    async def add(self, counts: Mapping[str, int]) -> None:
        """Add ``counts`` ({outcome: n}) in one round trip; raises StoreUnavailable."""
        counts = {k: n for k, n in counts.items() if n}
        if not counts:
            return
        unknown = set(counts) - set(PUSH_OUTCOMES)
        if unknown:
            raise ValueError(f"not push outcomes: {sorted(unknown)}")
        async with redis_errors(self._timeout_s):
            async with self._redis.pipeline(transaction=False) as pipe:
                for outcome, n in counts.items():
                    pipe.hincrby(self.key, outcome, n)
                await pipe.execute()

    async def read(self) -> dict[str, int]:
        """Every outcome counted so far (those never seen are absent); raises StoreUnavailable."""
        async with redis_errors(self._timeout_s):
            raw = await self._redis.hgetall(self.key)
        return {k: int(v) for k, v in raw.items() if k in PUSH_OUTCOMES}

    async def close(self) -> None:
        await self._redis.aclose()
