"""Who is typing in one conversation, with expiry: pure, time passed in."""

from __future__ import annotations


class TypingState:
    __slots__ = ("_ttl", "_until")

    def __init__(self, ttl_s: float):
        self._ttl = ttl_s
        self._until: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self._until)

    def update(self, user: str, on: bool, now: float) -> bool:
        """Record a typing frame; True when others must be told (the state changed)."""
        was = user in self._until
        if on:
            self._until[user] = now + self._ttl
            return not was
        self._until.pop(user, None)
        return was

    def expire(self, now: float) -> list[str]:
        """Users whose typing lapsed without a refresh (they are removed)."""
        gone = [u for u, t in self._until.items() if t <= now]
        for u in gone:
            del self._until[u]
        return gone
