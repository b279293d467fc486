"""Conversation(cid): the single writer of its seq.

Sends are batched by the mailbox (group commit): the whole batch is numbered,
written with one ordered insert, and acknowledged only once durable. Stored
events then fan out in seq order. The store's unique indexes are the fence:
a client_msg_id the dedupe window missed resolves to the stored event, and a
seq another writer holds makes this actor reload and renumber what it had
not yet stored (nothing unstored was ever acknowledged, so renumbering is safe).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from raychat.errors import ChatError, Conflict, Invalid, NotFound, Unavailable
from storage.errors import DuplicateEvent, StoreError

from .conversation_state import ConversationState, SendCommand, event_digest
from .env import ActorEnv
from .events import utc
from .registry import PassivationReason

log = logging.getLogger(__name__)

_MAX_FENCE_RETRIES = 5


class ConversationActor:
    batchable: ClassVar[frozenset[str]] = frozenset({"send"})
    __slots__ = ("cid", "_env", "state", "_stale")

    def __init__(self, cid: str, env: ActorEnv):
        self.cid = cid
        self._env = env
        self.state: ConversationState | None = None
        self._stale = False

    async def on_activate(self) -> None:
        try:
            conv, last = await asyncio.gather(self._env.conversations.get(self.cid),
                                              self._env.events.last_seq(self.cid))
        except StoreError as exc:
            raise Unavailable("store unavailable") from exc
        if conv is None:
            raise NotFound("no such conversation")
        self.state = ConversationState(self.cid, conv["kind"], frozenset(conv["members"]), last,
                                       self._env.dedupe_window)
        self._stale = False

    async def on_passivate(self, reason: PassivationReason) -> None:
        self.state = None

    def can_passivate(self) -> bool:
        return True

    async def handle(self, method: str, arg: Any) -> Any:
        if method == "send":
            result = (await self.handle_batch("send", [arg]))[0]
            if isinstance(result, ChatError):
                raise result
            return result
        if method == "members":
            await self._refresh_if_stale()
            return sorted(self.state.members)
        raise Invalid(f"unknown conversation method {method!r}")

    async def handle_batch(self, method: str, cmds: list[SendCommand]) -> list[Any]:
        await self._refresh_if_stale()
        state = self.state
        results: list[Any] = [None] * len(cmds)
        news: list[int] = []
        first_of: dict[tuple[str, str], int] = {}   # the same id twice in one batch: one event
        twins: list[tuple[int, int]] = []
        for i, cmd in enumerate(cmds):
            adm = state.admit(cmd)
            if adm.new is None:
                results[i] = adm.event if adm.event is not None else adm.error
                continue
            key = (cmd.sender_id, cmd.client_msg_id)
            if key in first_of:
                twins.append((i, first_of[key]))
                continue
            first_of[key] = i
            news.append(i)
        if news:
            written = await self._write([cmds[i] for i in news])
            for i, res in zip(news, written):
                results[i] = res
        for i, j in twins:
            res = results[j]
            if isinstance(res, dict) and event_digest(res) != cmds[i].digest():
                res = Conflict("client_msg_id reused with different content", ref=cmds[i].client_msg_id)
            results[i] = res
        return results

    async def _refresh_if_stale(self) -> None:
        if self.state is None or self._stale:
            await self.on_activate()

    async def _write(self, cmds: list[SendCommand]) -> list[Any]:
        """Store cmds as consecutive events; one result per cmd (event or ChatError)."""
        env, state = self._env, self.state
        out: list[Any] = [None] * len(cmds)
        pending = list(range(len(cmds)))
        stored: list[dict] = []
        created_at = utc(env.clock.now())
        fences = 0
        try:
            while pending:
                events = state.build([cmds[i] for i in pending], state.last_seq + 1, created_at)
                try:
                    await env.events.append(events)
                except DuplicateEvent as dup:
                    self._commit(events[:dup.index], pending[:dup.index], out, stored)
                    bad = pending[dup.index]
                    if dup.key == "client_msg_id":
                        out[bad] = await self._existing(cmds[bad])
                        pending = pending[dup.index + 1:]
                    else:
                        fences += 1
                        if fences > _MAX_FENCE_RETRIES:
                            raise Unavailable("conversation is moving between hosts, retry")
                        log.warning("conversation %s: seq %s held by another writer; reloading",
                                    self.cid, events[dup.index]["seq"])
                        state.last_seq = await env.events.last_seq(self.cid)
                        pending = pending[dup.index:]
                    continue
                self._commit(events, pending, out, stored)
                pending = []
        except (StoreError, Unavailable) as exc:
            # The write's outcome is unknown: reload seq and members before the next message.
            self._stale = True
            err = Unavailable("store unavailable, nothing was accepted; retry")
            for i in pending:
                out[i] = Unavailable(err.message, ref=cmds[i].client_msg_id)
            if not isinstance(exc, (StoreError, Unavailable)):
                raise
        if stored:
            env.fanout(state.members, stored)
            env.spawn(env.conversations.record_activity(self.cid, stored[-1]["seq"], stored[-1]["created_at"]),
                      "record_activity")
        return out

    def _commit(self, events: list[dict], idx: list[int], out: list[Any], stored: list[dict]) -> None:
        for ev, i in zip(events, idx):
            out[i] = ev
            self.state.remember(ev)
            stored.append(ev)
        if events:
            self.state.last_seq = events[-1]["seq"]

    async def _existing(self, cmd: SendCommand) -> Any:
        ev = await self._env.events.find_client_msg(self.cid, cmd.sender_id, cmd.client_msg_id)
        if ev is None:  # the index said it exists; it must be readable, else the store is in trouble
            raise Unavailable("store inconsistent, retry")
        self.state.remember(ev)
        if event_digest(ev) != cmd.digest():
            return Conflict("client_msg_id reused with different content", ref=cmd.client_msg_id)
        return ev
