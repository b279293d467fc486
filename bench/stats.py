"""Latency summaries: nearest-rank percentiles, reported in milliseconds."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """{n, p50, p95, p99, max, mean} in ms for durations given in seconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0}
    ms = lambda v: round(v * 1000, 3)  # noqa: E731
    return {"n": len(ordered), "p50": ms(percentile(ordered, 50)), "p95": ms(percentile(ordered, 95)),
            "p99": ms(percentile(ordered, 99)), "max": ms(ordered[-1]),
            "mean": ms(sum(ordered) / len(ordered))}
