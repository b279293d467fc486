"""UserSession(uid): the user's live sockets (by gateway replica) and their presence.

Exists while the user has a live connection; passivates once the last one is gone.
Fan-out reads ``connections`` directly (a read of immutable snapshots, no mailbox
round trip), while connects and disconnects go through the mailbox in order.

Presence: online from the first socket; offline ``grace_s`` after the last one closes
(a reconnect within the grace period is not news). Changes are stored in Redis (with a
TTL the host refreshes, so a dead host's users go offline by themselves) and sent as
``presence`` frames to the users who share a direct conversation with this one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from raychat.clock import iso
from raychat.errors import Invalid
from storage.errors import StoreError

from .env import ActorEnv
from .events import dumps, utc
from .registry import PassivationReason

log = logging.getLogger(__name__)

PRESENCE_GRACE_S = 2.0


class SessionActor:
    batchable: ClassVar[frozenset[str]] = frozenset()
    __slots__ = ("uid", "_env", "connections", "online", "_grace_token", "_telling")

    def __init__(self, uid: str, env: ActorEnv):
        self.uid = uid
        self._env = env
        self.connections: dict[str, frozenset[str]] = {}   # replica_id -> socket ids
        self.online = False
        self._grace_token = 0
        self._telling: asyncio.Task | None = None   # the newest presence change being sent

    async def on_activate(self) -> None:
        self.connections = {}

    async def on_passivate(self, reason: PassivationReason) -> None:
        # Only when the host stops: the sockets die with it. A session that moved to another
        # host stays online: its sockets are registered there, and an offline written now
        # could land after the new owner's online.
        if self.online and reason is not PassivationReason.MOVED:
            await self._go_offline()
        if self._telling is not None:
            await asyncio.wait([self._telling])
        self.connections = {}

    def can_passivate(self) -> bool:
        return not self.connections and not self.online and self._telling is None

    async def handle(self, method: str, arg: Any) -> Any:
        if method == "connect":
            replica_id, socket_id = arg
            self.connections[replica_id] = self.connections.get(replica_id, frozenset()) | {socket_id}
            self._grace_token += 1           # cancels a pending offline
            if not self.online:
                await self._go_online()
            return self.socket_count()
        if method in ("disconnect", "drop_replica"):
            replica_id, sockets = (arg[0], {arg[1]}) if method == "disconnect" else (arg, None)
            self._remove(replica_id, sockets)
            if not self.connections and self.online:
                self._grace_token += 1
                self._env.call_later(PRESENCE_GRACE_S, "user", self.uid, "grace_over", self._grace_token)
            return self.socket_count()
        if method == "grace_over":
            if arg == self._grace_token and not self.connections and self.online:
                await self._go_offline()
            return self.socket_count()
        raise Invalid(f"unknown session method {method!r}")

    async def handle_batch(self, method: str, args: list[Any]) -> list[Any]:
        raise Invalid("sessions take no batches")

    def socket_count(self) -> int:
        return sum(len(s) for s in self.connections.values())

    def _remove(self, replica_id: str, sockets: set[str] | None) -> None:
        left = frozenset() if sockets is None else self.connections.get(replica_id, frozenset()) - sockets
        if left:
            self.connections[replica_id] = left
        else:
            self.connections.pop(replica_id, None)

    async def _go_online(self) -> None:
        self.online = True
        try:
            await self._env.presence.set_online(self.uid, self._env.presence_ttl_s)
        except StoreError as exc:   # presence is best effort: the TTL repairs it
            log.warning("presence online for %s failed: %r", self.uid, exc)
        await self._tell_contacts("online", None)

    async def _go_offline(self) -> None:
        self.online = False
        now = utc(self._env.clock.now())
        try:
            await self._env.presence.set_offline(self.uid, now)
        except StoreError as exc:
            log.warning("presence offline for %s failed: %r", self.uid, exc)
        await self._tell_contacts("offline", iso(now))

    async def _tell_contacts(self, status: str, last_seen: str | None) -> None:
        """Send the change to the direct peers, off the mailbox: a reconnect does not wait for
        it. Each change waits for this session's previous one, so peers see them in order."""
        self._telling = asyncio.get_running_loop().create_task(
            self._tell(status, last_seen, self._telling))

    async def _tell(self, status: str, last_seen: str | None, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            async with self._env.presence_lane:
                peers = await self._env.conversations.direct_peers(self.uid)
            if peers:
                frame = dumps({"type": "presence", "user_id": self.uid, "status": status, "last_seen": last_seen})
                self._env.fanout(peers, [("", 0, frame, None)])
        except StoreError as exc:
            log.warning("presence of %s not sent: %r", self.uid, exc)
        except Exception:                   # nobody awaits this task: a bug must still be seen
            log.exception("presence of %s not sent", self.uid)
        finally:
            if self._telling is asyncio.current_task():
                self._telling = None
