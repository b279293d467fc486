"""One live client connection (WebSocket or SSE) as the gateway replica sees it.

Everything for the client goes through one bounded queue drained by one writer
task, so frames leave in order. The writer keeps, per conversation, the last
seq it delivered: a duplicate is dropped, and a gap (an event the fan-out lost,
e.g. while a host restarted) is filled from the store before the event that
revealed it. Every seq N is fanned out only after all seqs below it are durable,
so the store always has what the gap needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable

from actors.events import event_frame
from raychat.clock import Clock, SystemClock

from .metrics import DELIVERY_LATENCY

log = logging.getLogger(__name__)

# read_after(cid, after_seq, limit) -> (events this user may see, last seq scanned, more to scan?)
ReadAfter = Callable[[str, int, int], Awaitable[tuple[list[dict], int, bool]]]
_PAGE = 500


class SlowConsumer(Exception):
    """The client does not read fast enough; it is closed with 1013 and resumes."""


class Conn:
    def __init__(self, socket_id: str, user_id: str, send_text: Callable[[str], Awaitable[None]],
                 read_after: ReadAfter, queue_max: int, *, transport: str = "ws", clock: Clock | None = None):
        self.socket_id = socket_id
        self.user_id = user_id
        self.transport = transport          # "ws" or "sse": the label of its metrics
        self._clock = clock or SystemClock()
        self._latency = DELIVERY_LATENCY.labels(transport)
        self._send_text = send_text
        self._read_after = read_after
        self._queue: deque = deque()
        self._queue_max = queue_max
        self._wake = asyncio.Event()
        self.delivered: dict[str, int] = {}
        self.closed = False
        self.overflowed = False

    # ---- producers (never block) ---------------------------------------------------
    def offer(self, cid: str, seq: int, frame: str, forget: frozenset | None = None,
              created_at: float | None = None) -> None:
        """A frame from the fan-out: an event (seq > 0) or an ephemeral frame (seq 0).

        ``forget``: users for whom this event ends their membership; their sockets stop
        tracking the conversation, so no gap fill ever reaches past their removal.
        ``created_at`` (epoch seconds): when given, the event's delivery latency is observed
        once its frame is written.
        """
        if self.closed:
            return
        if len(self._queue) >= self._queue_max:
            self.overflowed = True
            self._wake.set()
            return
        self._queue.append(("ev", cid, seq, frame, forget, created_at))
        self._wake.set()

    def send(self, text: str) -> None:
        """A frame addressed to this client only (welcome, ack, error, pong)."""
        if not self.closed:
            self._queue.append(("raw", text))
            self._wake.set()

    def sync(self, cid: str, after_seq: int) -> None:
        """Send every stored event of cid after after_seq, then go on with live events."""
        if not self.closed:
            self._queue.append(("sync", cid, after_seq))
            self._wake.set()

    def resync_all(self) -> None:
        """After a host restart: fill whatever the fan-out may have lost, for every tracked conversation."""
        if not self.closed:
            self._queue.append(("resync",))
            self._wake.set()

    # ---- the writer ------------------------------------------------------------------
    async def run_writer(self) -> None:
        """Drain the queue to the client until closed; raises SlowConsumer on overflow."""
        while not self.closed:
            if self.overflowed:
                raise SlowConsumer()
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue.popleft()
            tag = item[0]
            if tag == "raw":
                await self._send_text(item[1])
            elif tag == "ev":
                if await self._deliver(item[1], item[2], item[3]) and item[5] is not None:
                    self._latency.observe(max(0.0, self._clock.now() - item[5]))
                if item[4] and self.user_id in item[4]:
                    self.delivered.pop(item[1], None)
            elif tag == "sync":
                await self._replay(item[1], item[2], force=True)
            elif tag == "resync":
                for cid, last in list(self.delivered.items()):
                    await self._replay(cid, last, force=False)

    async def _deliver(self, cid: str, seq: int, frame: str) -> bool:
        """Write a live frame unless it is a duplicate; True if it was written."""
        if seq == 0:
            await self._send_text(frame)
            return True
        last = self.delivered.get(cid)
        if last is not None:
            if seq <= last:
                return False
            if seq > last + 1:
                await self._replay(cid, last, force=False, upto=seq - 1)
        self.delivered[cid] = seq
        await self._send_text(frame)
        return True

    async def _replay(self, cid: str, after: int, *, force: bool, upto: int | None = None) -> None:
        """Send stored events (after, upto]; with force, even those delivered before."""
        while True:
            events, scanned, more = await self._read_after(cid, after, _PAGE)
            for ev in events:
                seq = ev["seq"]
                if upto is not None and seq > upto:
                    return
                if force or seq > self.delivered.get(cid, 0):
                    await self._send_text(event_frame(ev))
                if seq > self.delivered.get(cid, 0):
                    self.delivered[cid] = seq
            if not more or (upto is not None and scanned >= upto):
                return
            after = scanned

    def close(self) -> None:
        self.closed = True
        self._wake.set()
