"""What a host gives the virtual actors it runs: storage ports, the clock, settings, fan-out."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Iterable

from raychat.clock import Clock
from storage.ports import ConversationStore, EventStore, MediaStore, PresenceStore

log = logging.getLogger(__name__)

PRESENCE_LANE = 2


@dataclass
class ActorEnv:
    events: EventStore
    conversations: ConversationStore
    presence: PresenceStore
    clock: Clock
    dedupe_window: int
    presence_ttl_s: int
    max_group_members: int
    # fanout(user_ids, items): hand frames to those users' live sockets, in order. An item is
    # (conversation_id, seq, frame_text, forget): seq 0 marks an ephemeral frame (typing,
    # receipt); ``forget`` names users whose sockets stop tracking the conversation (removed).
    # fanout(user_ids, items, push_job): a message job (push/jobs.py) rides along; the host
    # that owns each user enqueues it for those of its users who are not online.
    fanout: Callable[..., None]
    # call_later(delay_s, kind, id, method, arg): post a message to a virtual actor later.
    call_later: Callable[[float, str, str, str, Any], None]
    # The push queue (push/ports.py JobQueue; only ``enqueue`` is used here), or None: push off.
    push: Any = None
    # Upload records (storage/ports.py MediaStore; only ``release``): a deleted message's media
    # stops being the conversation's. None: nothing to release (tests without media).
    media: MediaStore | None = None
    # Presence changes wait here for their store query (who to tell), at most PRESENCE_LANE
    # at a time per host: when thousands of sockets close or reconnect at once (a redeploy, a
    # network blip), their queries would otherwise reach the store together, and every
    # message write behind them would wait its turn with hundreds of them.
    presence_lane: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PRESENCE_LANE))
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
