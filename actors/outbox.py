"""Per gateway replica: the frames waiting to be streamed to it, in order.

Bounded: a replica that stops reading loses its oldest frames rather than the
host's memory; its sockets recover them from the store (gateway gap fill).
"""

from __future__ import annotations

import asyncio

# (socket_ids, conversation_id, seq, frame_text, forget): see ActorEnv.fanout.
Item = tuple[tuple[str, ...], str, int, str, "frozenset[str] | None"]


class Outbox:
    __slots__ = ("items", "wakeup", "generation", "capacity", "dropped")

    def __init__(self, capacity: int):
        self.items: list[Item] = []
        self.wakeup = asyncio.Event()
        self.generation = 0
        self.capacity = capacity
        self.dropped = 0

    def push(self, item: Item) -> None:
        self.items.append(item)
        if len(self.items) > self.capacity:
            cut = len(self.items) - self.capacity
            del self.items[:cut]
            self.dropped += cut
        self.wakeup.set()

    def take(self, limit: int | None = None) -> list[Item]:
        """The oldest ``limit`` items (all by default), removed from the box."""
        if limit is not None and len(self.items) > limit:
            items, self.items = self.items[:limit], self.items[limit:]
            return items
        items, self.items = self.items, []
        self.wakeup.clear()
        return items
