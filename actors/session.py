"""UserSession(uid): the user's live sockets (by gateway replica) and their presence.

Exists while the user has a live connection; passivates once the last one is gone.
Fan-out reads ``connections`` directly (a read of immutable snapshots, no mailbox
round trip), while connects and disconnects go through the mailbox in order.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from raychat.errors import Invalid
from storage.errors import StoreError

from .env import ActorEnv
from .events import utc
from .registry import PassivationReason

log = logging.getLogger(__name__)


class SessionActor:
    batchable: ClassVar[frozenset[str]] = frozenset()
    __slots__ = ("uid", "_env", "connections")

    def __init__(self, uid: str, env: ActorEnv):
        self.uid = uid
        self._env = env
        self.connections: dict[str, frozenset[str]] = {}   # replica_id -> socket ids

    async def on_activate(self) -> None:
        self.connections = {}

    async def on_passivate(self, reason: PassivationReason) -> None:
        if self.connections:   # only when the host stops: the sockets die with it
            await self._presence_offline()
        self.connections = {}

    def can_passivate(self) -> bool:
        return not self.connections

    async def handle(self, method: str, arg: Any) -> Any:
        if method == "connect":
            replica_id, socket_id = arg
            first = not self.connections
            self.connections[replica_id] = self.connections.get(replica_id, frozenset()) | {socket_id}
            if first:
                await self._presence_online()
            return self.socket_count()
        if method == "disconnect":
            replica_id, socket_id = arg
            self._remove(replica_id, {socket_id})
            if not self.connections:
                await self._presence_offline()
            return self.socket_count()
        if method == "drop_replica":
            self._remove(arg, None)
            if not self.connections:
                await self._presence_offline()
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

    async def _presence_online(self) -> None:
        try:
            await self._env.presence.set_online(self.uid, self._env.presence_ttl_s)
        except StoreError as exc:   # presence is best effort: the TTL repairs it
            log.warning("presence online for %s failed: %r", self.uid, exc)

    async def _presence_offline(self) -> None:
        try:
            await self._env.presence.set_offline(self.uid, utc(self._env.clock.now()))
        except StoreError as exc:
            log.warning("presence offline for %s failed: %r", self.uid, exc)
