"""A gateway replica's connections and the event streams that feed them.

At start the replica subscribes to every host's ``stream(replica_id)``. A
stream that breaks means its host died: once the host is back, the replica
registers again the sessions that lived there and asks every connection to
fill the gap from the store.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from .conn import Conn
from .router import HostRouter

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, router: HostRouter):
        self.router = router
        self.replica_id = f"gw-{uuid.uuid4().hex[:12]}"
        self.conns: dict[str, Conn] = {}
        self._tasks: list[asyncio.Task] = []
        self.attached: dict[str, bool] = {}

    def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(name)) for name in self.router.names]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []

    def add(self, conn: Conn) -> None:
        self.conns[conn.socket_id] = conn

    def remove(self, conn: Conn) -> None:
        self.conns.pop(conn.socket_id, None)

    def new_socket_id(self) -> str:
        return uuid.uuid4().hex

    async def connect(self, conn: Conn) -> None:
        await self.router.call("user", conn.user_id, "connect", (self.replica_id, conn.socket_id))

    async def disconnect(self, conn: Conn) -> None:
        try:
            await self.router.call("user", conn.user_id, "disconnect", (self.replica_id, conn.socket_id))
        except Exception as exc:   # the host is gone; its restart forgets the socket anyway
            log.info("disconnect of %s not recorded: %r", conn.socket_id, exc)

    async def _consume(self, host: str) -> None:
        delay = 0.1
        broken = False
        while True:
            try:
                gen = self.router.handles[host].stream.remote(self.replica_id)
                async for ref in gen:
                    batch = await ref
                    if not self.attached.get(host):
                        self.attached[host] = True
                        delay = 0.1
                        if broken:
                            await self._recover(host)
                    for socket_ids, cid, seq, frame, forget in batch:
                        for sid in socket_ids:
                            conn = self.conns.get(sid)
                            if conn is not None:
                                conn.offer(cid, seq, frame, forget)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream from %s broke: %r; resubscribing", host, exc)
                await self.router.refresh(host)
            self.attached[host] = False
            broken = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _recover(self, host: str) -> None:
        """The host restarted with no sessions: register ours again, then fill gaps everywhere."""
        for conn in list(self.conns.values()):
            if self.router.owner("user", conn.user_id) == host:
                try:
                    await self.connect(conn)
                except Exception as exc:
                    log.warning("re-register of %s failed: %r", conn.socket_id, exc)
        for conn in list(self.conns.values()):
            conn.resync_all()
