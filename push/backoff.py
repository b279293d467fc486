"""Retry delays: exponential, capped, with full jitter.

Full jitter (a uniform pick in [0, min(cap, base · 2^n)]) spreads the retries of jobs that
failed together, so a provider coming back is not hit by all of them at the same instant
(AWS Architecture Blog, "Exponential Backoff And Jitter"). The random source is injected.
"""

from __future__ import annotations

from typing import Callable


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """The delay before retry number ``attempt`` (0 for the first retry): uniform in
    [0, min(cap_s, base_s · 2^attempt)]. ``rand()`` returns a float in [0, 1)."""
    if attempt < 0:
        raise ValueError("attempt >= 0")
    # 2**attempt grows without bound; past the cap it no longer matters.
    ceiling = cap_s if attempt >= 64 else min(cap_s, base_s * 2.0 ** attempt)
    return rand() * ceiling


def retry_delay_s(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float],
                  retry_after_s: float | None = None) -> float:
    """The backoff, but never sooner than a provider's own ``Retry-After`` (capped too)."""
    delay = backoff_s(attempt, base_s, cap_s, rand)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s))
    return delay
