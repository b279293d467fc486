"""A circuit breaker: stop calling a provider that keeps failing, and probe it now and then.

    closed ──threshold consecutive failures──> open ──cool-down over──> half-open
       ▲                                        ▲                          │ one trial send
       └──────────── trial succeeds ────────────┼──── trial fails ─────────┘

Time comes from an injected clock, so tests move it by hand. A ``Permit`` names the epoch it
was given in: a result from before the breaker last changed state (a slow send that started
while closed and ends while open) is ignored, so it can neither close nor re-open it by
accident. A half-open trial whose result never comes (its worker died) is given up after one
cool-down, and another trial may start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raychat.clock import Clock

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class Permit:
    trial: bool      # the one half-open probe: its failure re-opens the breaker
    epoch: int


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_s: float, clock: Clock):
        if threshold < 1 or cooldown_s <= 0:
            raise ValueError("threshold >= 1 and cooldown_s > 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._epoch = 0
        self._opened_at = 0.0
        self._trial_at: float | None = None    # when the half-open trial was handed out

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock.monotonic() >= self._opened_at + self.cooldown_s:
            self._move("half_open")
        return self._state

    def acquire(self) -> Permit | None:
        """A permit to send now, or None: wait ``wait_s()`` and ask again."""
        state = self.state
        if state == "closed":
            return Permit(False, self._epoch)
        if state == "half_open":
            now = self._clock.monotonic()
            if self._trial_at is None or now >= self._trial_at + self.cooldown_s:
                self._trial_at = now
                return Permit(True, self._epoch)
        return None

    def wait_s(self) -> float:
        """How long until a refused caller should ask again (0 when it may go now)."""
        state, now = self.state, self._clock.monotonic()
        if state == "open":
            return max(0.0, self._opened_at + self.cooldown_s - now)
        if state == "half_open" and self._trial_at is not None:
            # The trial's answer decides; ask again soon after it could have come.
            return max(0.0, min(self._trial_at + self.cooldown_s - now, self.cooldown_s / 10))
        return 0.0

    def success(self, permit: Permit) -> None:
        if permit.epoch != self._epoch:
            return
        if self._state == "half_open" and permit.trial:
            self._move("closed")
        elif self._state == "closed":
            self._failures = 0

    def failure(self, permit: Permit) -> None:
        if permit.epoch != self._epoch:
            return
        if self._state == "half_open" and permit.trial:
            self._move("open")
        elif self._state == "closed":
            self._failures += 1
            if self._failures >= self.threshold:
                self._move("open")

    def _move(self, state: State) -> None:
        self._state = state
        self._epoch += 1
        self._failures = 0
        self._trial_at = None
        if state == "open":
            self._opened_at = self._clock.monotonic()
