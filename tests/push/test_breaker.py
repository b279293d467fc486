"""The circuit breaker, on a clock moved by hand."""

from __future__ import annotations

import pytest

from push.breaker import CircuitBreaker
from raychat.clock import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


def fail(breaker, times=1):
    for _ in range(times):
        breaker.failure(breaker.acquire())


def test_it_stays_closed_below_the_threshold(clock):
    b = CircuitBreaker(3, 10, clock)
    fail(b, 2)
    assert b.state == "closed" and b.acquire() is not None


def test_a_success_resets_the_count_of_consecutive_failures(clock):
    b = CircuitBreaker(3, 10, clock)
    fail(b, 2)
    b.success(b.acquire())
    fail(b, 2)
    assert b.state == "closed"


def test_threshold_consecutive_failures_open_it_for_the_cooldown(clock):
    b = CircuitBreaker(3, 10, clock)
    fail(b, 3)
    assert b.state == "open"
    assert b.acquire() is None
    assert b.wait_s() == pytest.approx(10)
    clock.advance(4)
    assert b.acquire() is None and b.wait_s() == pytest.approx(6)


def test_after_the_cooldown_exactly_one_trial_goes_through(clock):
    b = CircuitBreaker(1, 10, clock)
    fail(b)
    clock.advance(10)
    assert b.state == "half_open"
    trial = b.acquire()
    assert trial is not None and trial.trial
    assert b.acquire() is None, "a second send while the trial is out"
    assert 0 < b.wait_s() <= 1.0


def test_a_successful_trial_closes_it(clock):
    b = CircuitBreaker(1, 10, clock)
    fail(b)
    clock.advance(10)
    b.success(b.acquire())
    assert b.state == "closed"
    assert b.acquire() is not None and b.acquire() is not None


def test_a_failed_trial_opens_it_for_another_cooldown(clock):
    b = CircuitBreaker(1, 10, clock)
    fail(b)
    clock.advance(10)
    b.failure(b.acquire())
    assert b.state == "open" and b.wait_s() == pytest.approx(10)


def test_a_trial_whose_answer_never_comes_is_given_up_after_a_cooldown(clock):
    b = CircuitBreaker(1, 10, clock)
    fail(b)
    clock.advance(10)
    assert b.acquire().trial          # its worker died: no success(), no failure()
    clock.advance(10)
    assert b.acquire() is not None


def test_a_late_answer_from_before_it_opened_changes_nothing(clock):
    b = CircuitBreaker(2, 10, clock)
    slow = b.acquire()                # sent while closed, answers after the breaker opened
    fail(b, 2)
    b.success(slow)
    assert b.state == "open"
    clock.advance(10)
    trial = b.acquire()
    b.failure(slow)                   # an old failure must not re-open the half-open breaker either
    assert b.state == "half_open"
    b.success(trial)
    assert b.state == "closed"


def test_bad_parameters_are_refused(clock):
    with pytest.raises(ValueError):
        CircuitBreaker(0, 10, clock)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0, clock)
