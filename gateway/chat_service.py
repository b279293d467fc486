"""Conversations and messages. Reads go to the store directly (CQRS); writes and live
fan-out go through the virtual actors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors.conversation_state import SendCommand
from actors.events import event_to_wire, utc
from raychat.clock import Clock, iso
from raychat.config import Settings
from raychat.errors import Invalid, NotFound, TooLarge

from .router import HostRouter
from .service_common import new_id, store_errors

MAX_GROUP_MEMBERS = 10_000


class ChatService:
    def __init__(self, settings: Settings, stores: Any, router: HostRouter, clock: Clock):
        self.settings = settings
        self.stores = stores
        self.router = router
        self.clock = clock

    # ---- conversations ---------------------------------------------------------------
    async def create_conversation(self, user_id: str, kind: str, members: list[str],
                                  title: str | None) -> tuple[dict[str, Any], bool]:
        others = sorted(set(members) - {user_id})
        if kind == "direct":
            if len(others) != 1 or len(members) != 1:
                raise Invalid("members: a direct conversation has exactly one other member")
            await self._require_users(others)
            pair = sorted([user_id, others[0]])
            conv = self._new_conv("direct", pair, None, {u: "member" for u in pair})
            async with store_errors():
                stored, created = await self.stores.conversations.create(conv, direct_key=":".join(pair))
            return self.conversation_wire(stored), created
        if kind != "group":
            raise Invalid("kind: must be 'direct' or 'group'")
        if title is None or not title.strip() or len(title) > 128:
            raise Invalid("title: 1-128 characters required for a group")
        if len(others) + 1 > MAX_GROUP_MEMBERS:
            raise Invalid(f"members: a group has at most {MAX_GROUP_MEMBERS} members")
        await self._require_users(others)
        roles = {u: "member" for u in others}
        roles[user_id] = "owner"
        conv = self._new_conv("group", [user_id, *others], title.strip(), roles)
        async with store_errors():
            stored, created = await self.stores.conversations.create(conv)
        return self.conversation_wire(stored), created

    def _new_conv(self, kind: str, members: list[str], title: str | None, roles: dict[str, str]) -> dict[str, Any]:
        now = utc(self.clock.now())
        return {"conversation_id": new_id("c"), "kind": kind, "title": title, "members": members,
                "roles": roles, "created_at": now, "last_seq": 0, "last_activity_at": now}

    async def _require_users(self, user_ids: list[str]) -> None:
        for uid in user_ids:
            async with store_errors():
                if await self.stores.users.by_id(uid) is None:
                    raise NotFound(f"members: no such user {uid[:64]!r}")

    async def member_conversation(self, user_id: str, cid: str) -> dict[str, Any]:
        """The conversation if user_id is a member; 404 otherwise (non-members may not know it exists)."""
        async with store_errors():
            conv = await self.stores.conversations.get(cid)
        if conv is None or user_id not in conv["members"]:
            raise NotFound("no such conversation")
        return conv

    async def list_conversations(self, user_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        before = None
        if cursor:
            try:
                before = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
            except ValueError:
                raise Invalid("cursor: not a cursor this server gave out") from None
        async with store_errors():
            convs = await self.stores.conversations.list_for_user(user_id, before, limit + 1)
        page = convs[:limit]
        next_cursor = iso(page[-1]["last_activity_at"]) if len(convs) > limit and page else None
        return {"conversations": [self.conversation_wire(c) for c in page], "next_cursor": next_cursor}

    @staticmethod
    def conversation_wire(conv: dict[str, Any]) -> dict[str, Any]:
        return {"conversation_id": conv["conversation_id"], "kind": conv["kind"], "title": conv.get("title"),
                "members": list(conv["members"]), "roles": dict(conv.get("roles") or {}),
                "created_at": iso(conv["created_at"]), "last_seq": conv.get("last_seq", 0),
                "last_activity_at": iso(conv.get("last_activity_at") or conv["created_at"])}

    # ---- messages --------------------------------------------------------------------
    def check_body(self, body: str) -> None:
        if len(body.encode("utf-8", "surrogatepass")) > self.settings.max_body_bytes:
            raise TooLarge(f"body: over {self.settings.max_body_bytes} bytes")
        if not body.strip():
            raise Invalid("body: must not be empty")

    async def send(self, user_id: str, cid: str, client_msg_id: str, body: str,
                   attachments: list[str] | None = None, reply_to: int | None = None) -> dict[str, Any]:
        self.check_body(body)
        if attachments:
            raise Invalid("attachments: media uploads are not enabled on this server yet")
        cmd = SendCommand(sender_id=user_id, client_msg_id=client_msg_id, body=body,
                          attachments=tuple(attachments or ()), reply_to=reply_to)
        try:
            return await self.router.call("conv", cid, "send", cmd)
        except NotFound:
            raise NotFound("no such conversation") from None

    async def events_after(self, user_id: str, cid: str, after_seq: int, limit: int) -> dict[str, Any]:
        await self.member_conversation(user_id, cid)
        async with store_errors():
            events = await self.stores.events.read_after(cid, after_seq, limit + 1)
            last = await self.stores.events.last_seq(cid)
        return {"events": [event_to_wire(e) for e in events[:limit]], "last_seq": last,
                "has_more": len(events) > limit}

    async def history(self, user_id: str, cid: str, before_seq: int | None, limit: int) -> dict[str, Any]:
        await self.member_conversation(user_id, cid)
        async with store_errors():
            events = await self.stores.events.read_before(cid, before_seq, limit + 1)
        msgs = [event_to_wire(e) for e in events[:limit] if e["kind"] == "message"]
        return {"messages": msgs, "has_more": len(events) > limit}

    async def read_after(self, cid: str, after: int, limit: int) -> list[dict]:
        """For a connection's gap fill; membership was checked when it subscribed."""
        async with store_errors():
            return await self.stores.events.read_after(cid, after, limit)
