"""A gateway replica's connections and the event streams that feed them.

The replica consumes the fan-out stream of every host in the membership view (a TCP
connection to the host, actors/fanout_wire.py), and follows the view: it subscribes to a host
that joins and stops consuming one that leaves.
Two things can make the fan-out miss events, and both end the same way:

- a stream breaks because its host died: once the host is back, the replica registers
  again the sessions that lived there;
- the view changes: each socket whose session now belongs to another host is registered
  there (the old owner passivates its copy). While the change spreads, a conversation may
  fan out through a view that is already stale;

then every connection fills its gaps from the store (gateway/conn.py), once at once and
once more after the change has had time to reach every host.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from actors import fanout_wire as wire
from actors.events import created_at_of
from actors.placement import owner

from .conn import Conn
from .router import HostRouter

log = logging.getLogger(__name__)

# After a view change, every host has learnt it within about a watch round trip; the
# second resync covers fan-out sent meanwhile through the old view.
SETTLE_S = 2.0
# Three of the host's 15 s heartbeats missed: its node is gone without closing the connection.
STREAM_SILENCE_S = 45.0


class Hub:
    def __init__(self, router: HostRouter):
        self.router = router
        self.replica_id = f"gw-{uuid.uuid4().hex[:12]}"
        self.conns: dict[str, Conn] = {}
        self._consumers: dict[str, asyncio.Task] = {}
        self._started = False
        self._background: set[asyncio.Task] = set()
        self.attached: dict[str, bool] = {}
        self.rehomed = 0

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.router.on_change(self._membership_changed)
        self.router.start()
        for name in self.router.names:
            self._follow(name)

    async def stop(self) -> None:
        for t in [*self._consumers.values(), *self._background]:
            t.cancel()
        self._consumers = {}
        self._started = False

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

    # ---- membership ------------------------------------------------------------------
    def _follow(self, host: str) -> None:
        if host not in self._consumers:
            self._consumers[host] = asyncio.get_running_loop().create_task(self._consume(host))

    def _membership_changed(self, old: list[str], new: list[str]) -> None:
        for host in set(new) - set(self._consumers):
            self._follow(host)
        for host in set(self._consumers) - set(new):
            self._consumers.pop(host).cancel()
            self.attached.pop(host, None)
        task = asyncio.get_running_loop().create_task(self._rehome(old, new))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _rehome(self, old: list[str], new: list[str]) -> None:
        """Register each socket whose session changed hands with its new owner, then fill gaps."""
        for conn in list(self.conns.values()):
            key = ("user", conn.user_id)
            if old and owner(key, old) == owner(key, new):
                continue
            try:
                await self.connect(conn)      # the router sends it to the owner of its newest view
                self.rehomed += 1
            except Exception as exc:
                log.warning("re-register of %s after a membership change failed: %r", conn.socket_id, exc)
        for conn in list(self.conns.values()):
            conn.resync_all()
        await asyncio.sleep(SETTLE_S)
        for conn in list(self.conns.values()):
            conn.resync_all()

    # ---- streams ---------------------------------------------------------------------
    async def _consume(self, host: str) -> None:
        delay = 0.1
        broken = False
        while True:
            writer = None
            try:
                handle = await self.router.handle(host)
                where = await handle.fanout_endpoint.remote()
                reader, writer = await asyncio.open_connection(where["host"], where["port"])
                writer.write(wire.hello(self.replica_id, where["token"]))
                while True:
                    # The host writes at least a heartbeat every 15 s: silence means it is gone
                    # with its node (a process that dies closes the socket, and this read ends).
                    batch = await asyncio.wait_for(wire.read_batch(reader), STREAM_SILENCE_S)
                    if not self.attached.get(host):
                        self.attached[host] = True
                        delay = 0.1
                        if broken:
                            await self._recover(host)
                    for socket_ids, cid, seq, frame, forget in batch:
                        at = created_at_of(frame) if seq else None    # once per event, for the latency
                        for sid in socket_ids:
                            conn = self.conns.get(sid)
                            if conn is not None:
                                conn.offer(cid, seq, frame, forget, at)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream from %s broke: %r; resubscribing", host, exc)
                await self.router.refresh(host)
            finally:
                if writer is not None:
                    writer.close()
            self.attached[host] = False
            broken = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _recover(self, host: str) -> None:
        """The host restarted with no sessions: register ours again, then fill gaps everywhere."""
        for conn in list(self.conns.values()):
            if host in self.router.names and self.router.owner("user", conn.user_id) == host:
                try:
                    await self.connect(conn)
                except Exception as exc:
                    log.warning("re-register of %s failed: %r", conn.socket_id, exc)
        for conn in list(self.conns.values()):
            conn.resync_all()
