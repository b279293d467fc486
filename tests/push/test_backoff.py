"""Retry delays: exponential, capped, full jitter; the random source is injected."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from push.backoff import backoff_s, retry_delay_s


def test_the_ceiling_doubles_per_attempt_until_the_cap():
    top = lambda: 1.0     # noqa: E731  (the largest value rand() can approach)
    assert [backoff_s(n, 1.0, 10.0, top) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_full_jitter_picks_anywhere_from_zero_to_the_ceiling():
    assert backoff_s(3, 1.0, 100.0, lambda: 0.0) == 0.0
    assert backoff_s(3, 1.0, 100.0, lambda: 0.5) == 4.0


@given(attempt=st.integers(0, 10_000), base=st.floats(0.001, 100), cap=st.floats(0.001, 10_000),
       r=st.floats(0, 1, exclude_max=True))
def test_the_delay_is_always_within_zero_and_the_cap(attempt, base, cap, r):
    assert 0 <= backoff_s(attempt, base, cap, lambda: r) <= cap


def test_jittered_delays_spread_out():
    rng = random.Random(7)
    delays = {round(backoff_s(5, 1.0, 300.0, rng.random), 3) for _ in range(50)}
    assert len(delays) > 40


def test_retry_after_is_a_floor_but_capped_too():
    assert retry_delay_s(0, 1.0, 60.0, lambda: 0.1, retry_after_s=30) == 30
    assert retry_delay_s(0, 1.0, 60.0, lambda: 0.1, retry_after_s=3600) == 60
    assert retry_delay_s(8, 1.0, 60.0, lambda: 0.9, retry_after_s=1) == pytest.approx(54)


def test_a_negative_attempt_is_a_bug():
    with pytest.raises(ValueError):
        backoff_s(-1, 1.0, 10.0, lambda: 0.5)
