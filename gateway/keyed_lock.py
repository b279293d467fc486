"""One asyncio lock per key, kept only while someone holds or waits for it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Hashable


class KeyedLock:
    """``async with locks.hold(key)``: one holder per key at a time, waiters served first come,
    first served (asyncio.Lock is FIFO). Acquiring a free key does not yield to the loop, so
    tasks started in some order reach their critical sections in that order.

    Not thread-safe: each gateway replica uses it from its one event loop only.
    """

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
