"""Starlette WebSockets with Redis pub/sub, one channel per group: the pattern of encode's
``broadcaster`` chat example. Run with two worker processes (a group's sockets may be on either;
Redis carries every message to both):

    BENCH_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn bench.peers.starlette_server:app --port 9002 --workers 2

Each process holds one Redis subscription per group that has a socket there; each socket has
its own queue and a task that writes it. No store, no ack, no resume. Frames as in
bench/peers/websockets_server.py.

``broadcaster`` itself is not used: its ``subscribe`` (0.3.1) loses a subscriber when two
sockets of a new group join at once (both see no subscriber, the second replaces the first's
set), so here the same few lines are written with that race closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import datetime, timezone

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


class Hub:
    """This process's side of the pub/sub: local queues per group, one subscription per group."""

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.local: dict[str, set[asyncio.Queue]] = {}
        self.subscribed: dict[str, asyncio.Event] = {}   # set when Redis confirms the SUBSCRIBE
        self._any = asyncio.Event()
        # redis-py's PubSub opens its connection on the first command: two at once would open two.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def join(self, group: str, queue: asyncio.Queue) -> None:
        """Returns once a message published to ``group`` from now on reaches ``queue``."""
        members = self.local.setdefault(group, set())
        members.add(queue)
        if group not in self.subscribed:
            self.subscribed[group] = asyncio.Event()
            async with self._lock:
                await self.pubsub.subscribe(group)
            self._any.set()
        await self.subscribed[group].wait()

    async def leave(self, group: str, queue: asyncio.Queue) -> None:
        members = self.local.get(group)
        if members is None:
            return
        members.discard(queue)
        if not members:
            del self.local[group]
            self.subscribed.pop(group, None)
            async with self._lock:
                await self.pubsub.unsubscribe(group)

    async def publish(self, group: str, message: str) -> None:
        await self.redis.publish(group, message)

    async def _listen(self) -> None:
        while True:
            await self._any.wait()       # redis-py reads nothing before the first SUBSCRIBE
            async for msg in self.pubsub.listen():
                channel = msg["channel"].decode()
                if msg["type"] == "message":
                    for q in self.local.get(channel, ()):
                        q.put_nowait(msg["data"].decode())
                elif msg["type"] == "subscribe" and channel in self.subscribed:
                    self.subscribed[channel].set()
            self._any.clear()


hub = Hub(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


async def chat(ws: WebSocket) -> None:
    await ws.accept()
    try:
        hello = await ws.receive_json()
    except WebSocketDisconnect:
        return
    user_id, groups = str(hello["user_id"]), [str(g) for g in hello.get("groups", [])]
    queue: asyncio.Queue = asyncio.Queue()

    async def writer() -> None:
        while True:
            await ws.send_text(await queue.get())

    task = None
    try:
        for g in groups:
            await hub.join(g, queue)
        await ws.send_text(json.dumps({"type": "welcome", "user_id": user_id}))
        task = asyncio.create_task(writer())
        while True:
            frame = await ws.receive_json()
            kind = frame.get("type")
            if kind == "send" and frame.get("conversation_id") in groups:
                event = {"type": "event", "conversation_id": frame["conversation_id"],
                         "client_msg_id": frame["client_msg_id"], "sender_id": user_id,
                         "body": frame["body"], "created_at": datetime.now(timezone.utc).isoformat()}
                await hub.publish(frame["conversation_id"], json.dumps(event))
            elif kind == "ping":
                queue.put_nowait('{"type":"pong"}')
    except WebSocketDisconnect:
        pass
    finally:
        if task is not None:
            task.cancel()
        for g in groups:
            await hub.leave(g, queue)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    await hub.start()
    try:
        yield
    finally:
        await hub.stop()


app = Starlette(routes=[WebSocketRoute("/ws", chat)], lifespan=lifespan)
