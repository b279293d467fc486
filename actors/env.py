"""What a host gives the virtual actors it runs: storage ports, the clock, settings, fan-out."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from raychat.clock import Clock
from storage.ports import ConversationStore, EventStore, PresenceStore

log = logging.getLogger(__name__)


@dataclass
class ActorEnv:
    events: EventStore
    conversations: ConversationStore
    presence: PresenceStore
    clock: Clock
    dedupe_window: int
    presence_ttl_s: int
    # fanout(member_ids, events): hand stored events to the members' live sockets, in order.
    fanout: Callable[[frozenset[str], list[dict]], None]
    _tasks: set = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run work whose failure must not fail the message (it is logged instead)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s failed: %r", what, t.exception())

        task.add_done_callback(done)
