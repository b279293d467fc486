"""Conversations and messages. Reads go to the store directly (CQRS); writes and live
fan-out go through the virtual actors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.conversation_state import SendCommand
from actors.events import event_to_wire, utc
from raychat.clock import Clock, iso
from raychat.config import Settings
from raychat.errors import Invalid, NotFound, TooLarge

from .block_service import BlockService
from .keyed_lock import KeyedLock
from .media_service import MediaService
from .lru import LruCache
from .router import HostRouter
from .service_common import new_id, store_errors

FIXED_FACTS_CACHED = 50_000     # conversations per replica; an entry is a few hundred bytes


@dataclass(frozen=True, slots=True)
class FixedFacts:
    """What never changes about a conversation, so a replica may cache it for good."""
    kind: str
    pair: tuple[str, ...]       # a direct conversation's two members (fixed forever); () for a group
    e2ee: bool


class ChatService:
    def __init__(self, settings: Settings, stores: Any, router: HostRouter, clock: Clock,
                 blocks: BlockService | None = None, media: MediaService | None = None):
        self.settings = settings
        self.stores = stores
        self.router = router
        self.clock = clock
        self.blocks = blocks or BlockService(stores, clock)
        self.media = media              # None: attachments are refused (a context built without media)
        self._fixed: LruCache[str, FixedFacts] = LruCache(FIXED_FACTS_CACHED)
        self._send_order = KeyedLock()

    # ---- conversations ---------------------------------------------------------------
    async def create_conversation(self, user_id: str, kind: str, members: list[str],
                                  title: str | None, e2ee: bool = False) -> tuple[dict[str, Any], bool]:
        """``e2ee`` is fixed at creation. A direct conversation that exists already is answered
        as it is, flag included: there is one per pair, so clients read ``e2ee`` from the answer."""
        # Request order is join order: "the oldest member" follows what the creator listed.
        others = [m for m in dict.fromkeys(members) if m != user_id]
        if kind == "direct":
            if len(others) != 1 or len(members) != 1:
                raise Invalid("members: a direct conversation has exactly one other member")
            await self._require_users(others)
            # Checked whether or not the conversation exists: while a block stands, neither side
            # may open it (BlockService says why both sides).
            await self.blocks.check_direct(user_id, others[0])
            pair = sorted([user_id, others[0]])
            conv = self._new_conv("direct", pair, None, {u: "member" for u in pair}, e2ee)
            async with store_errors():
                stored, created = await self.stores.conversations.create(conv, direct_key=":".join(pair))
            return self.conversation_wire(stored), created
        if kind != "group":
            raise Invalid("kind: must be 'direct' or 'group'")
        if title is None or not title.strip() or len(title) > 128:
            raise Invalid("title: 1-128 characters required for a group")
        limit = self.settings.max_group_members
        if len(others) + 1 > limit:
            raise Invalid(f"members: a group has at most {limit} members")
        await self._require_users(others)
        roles = {u: "member" for u in others}
        roles[user_id] = "owner"
        conv = self._new_conv("group", [user_id, *others], title.strip(), roles, e2ee)
        async with store_errors():
            stored, created = await self.stores.conversations.create(conv)
        return self.conversation_wire(stored), created

    def _new_conv(self, kind: str, members: list[str], title: str | None, roles: dict[str, str],
                  e2ee: bool = False) -> dict[str, Any]:
        now = utc(self.clock.now())
        return {"conversation_id": new_id("c"), "kind": kind, "title": title, "members": members,
                "roles": roles, "created_at": now, "last_seq": 0, "last_activity_at": now, "e2ee": e2ee,
                "state_seq": 0, "message_count": 0}

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

    async def resume_point(self, user_id: str, cid: str, since: int) -> int:
        """Where a socket's resume of ``cid`` starts: ``since``, or the conversation's last seq when
        ``since`` lies past it (a client cursor ahead of the log: a restored store, a client bug).
        Taken as is, such a cursor would hold back every live event up to it, silently. NotFound
        for a non-member."""
        conv = await self.member_conversation(user_id, cid)
        stored = conv.get("last_seq") or 0
        if since <= stored:                 # the checkpoint is stored: no read needed
            return since
        async with store_errors():
            return min(since, await self.stores.events.last_seq(cid, at_least=stored))

    async def list_conversations(self, user_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        before, before_id = None, None
        if cursor:
            # Opaque to clients: "<last_activity_at>|<conversation_id>" of the page's last item.
            stamp, _, before_id = cursor.partition("|")
            try:
                before = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                raise Invalid("cursor: not a cursor this server gave out") from None
            before_id = before_id or None
        async with store_errors():
            convs = await self.stores.conversations.list_for_user(user_id, before, limit + 1, before_id=before_id)
        page = convs[:limit]
        next_cursor = None
        if len(convs) > limit and page:
            next_cursor = f"{iso(page[-1]['last_activity_at'])}|{page[-1]['conversation_id']}"
        return {"conversations": [self.conversation_wire(c, user_id) for c in page], "next_cursor": next_cursor}

    @staticmethod
    def conversation_wire(conv: dict[str, Any], user_id: str | None = None) -> dict[str, Any]:
        """The wire form; with ``user_id``, also that user's read cursor and unread count
        (the caller's own messages move their cursor, so they never count as unread)."""
        out = {"conversation_id": conv["conversation_id"], "kind": conv["kind"], "title": conv.get("title"),
               "members": list(conv["members"]), "roles": dict(conv.get("roles") or {}),
               "created_at": iso(conv["created_at"]), "last_seq": conv.get("last_seq", 0),
               "last_activity_at": iso(conv.get("last_activity_at") or conv["created_at"]),
               "e2ee": bool(conv.get("e2ee"))}
        last = conv.get("last_message")
        out["last_message"] = {**last, "created_at": iso(last["created_at"])} if last else None
        if user_id is not None:
            mine = (conv.get("reads") or {}).get(user_id) or {}
            out["read_seq"] = mine.get("seq", 0)
            out["unread_count"] = max(0, conv.get("message_count", 0) - mine.get("count", 0))
        return out

    # ---- messages --------------------------------------------------------------------
    def check_body(self, body: str, *, opaque: bool = False, may_be_empty: bool = False) -> None:
        """Size limits hold for every body. An ``opaque`` one (ciphertext of an e2ee conversation)
        is otherwise only required to be non-empty: the server never looks inside it. A message
        with attachments ``may_be_empty``: a photo needs no caption."""
        try:
            size = len(body.encode("utf-8"))
        except UnicodeEncodeError:
            # JSON can carry a lone surrogate ("\ud800"); UTF-8, and so the store, cannot.
            raise Invalid("body: must be valid Unicode (it holds a lone surrogate)") from None
        if size > self.settings.max_body_bytes:
            raise TooLarge(f"body: over {self.settings.max_body_bytes} bytes")
        if not may_be_empty and not (body if opaque else body.strip()):
            raise Invalid("body: must not be empty")

    async def fixed_facts(self, cid: str) -> FixedFacts:
        """Kind, direct pair and e2ee flag of a conversation: read once, then from this replica's LRU."""
        facts = self._fixed.get(cid)
        if facts is None:
            async with store_errors():
                conv = await self.stores.conversations.get(cid)
            if conv is None:
                raise NotFound("no such conversation")
            pair = tuple(conv["members"]) if conv["kind"] == "direct" else ()
            facts = FixedFacts(conv["kind"], pair, bool(conv.get("e2ee")))
            self._fixed.put(cid, facts)
        return facts

    async def send(self, user_id: str, cid: str, client_msg_id: str, body: str,
                   attachments: list[str] | None = None, reply_to: int | None = None) -> dict[str, Any]:
        # A sender's messages must reach the conversation in the order the sender sent them (a
        # socket starts one task per send frame, in frame order). The checks below may wait on the
        # store, and concurrent waits end in any order, so they run one send at a time per
        # (sender, conversation); the actor call is started inside, which fixes its place in the
        # host's queue, and awaited outside, so acks still overlap.
        async with self._send_order.hold((user_id, cid)):
            facts = await self.fixed_facts(cid)
            # An e2ee body is ciphertext, stored and relayed byte for byte: no normalization here or
            # later. Search indexing (DESIGN.md, "Search": a `terms` array per message) must skip
            # these conversations (Conversation["e2ee"]): words of ciphertext are noise and a leak.
            self.check_body(body, opaque=facts.e2ee, may_be_empty=bool(attachments))
            await self._unblocked(user_id, facts)
            if attachments:
                if self.media is None:
                    raise Invalid("attachments: media uploads are not enabled on this server")
                # Inside the ordering lock like the other checks; the media are recorded as
                # attached here, before the actor stores the message, so a member who sees the
                # event can fetch them at once. (If the actor then refuses the send, the uploader's
                # media is only reachable by members who were never shown its id.)
                await self.media.check_attachments(user_id, cid, list(attachments))
            cmd = SendCommand(sender_id=user_id, client_msg_id=client_msg_id, body=body,
                              attachments=tuple(attachments or ()), reply_to=reply_to,
                              deadline=self.clock.now() + self.router.admission_window_s)
            # A task's first step runs before the next lock holder resumes (both are queued on the
            # loop in that order), and that step submits the Ray call.
            call = asyncio.ensure_future(self.router.call("conv", cid, "send", cmd))
        try:
            return await call
        except NotFound:
            raise NotFound("no such conversation") from None

    async def events_after(self, user_id: str, cid: str, after_seq: int, limit: int) -> dict[str, Any]:
        conv = await self.member_conversation(user_id, cid)
        # The resume feed hides what a member removed and added back missed while out, as the
        # socket's replay does; a page keeps scanning past hidden events so it is never empty
        # while visible ones remain (a client pages with the last seq it was given).
        events: list[dict] = []
        after, more = after_seq, True
        # A seq known to be stored (the checkpoint, or the newest event read): last_seq reads
        # only above it. Never the client's after_seq, which may lie past the end.
        stored = conv.get("last_seq") or 0
        while more and len(events) <= limit:
            found, scanned, more = await self.read_visible(user_id, cid, after, limit + 1 - len(events))
            if scanned > after:
                stored = max(stored, scanned)
            after = scanned
            events += found
        async with store_errors():
            last = await self.stores.events.last_seq(cid, at_least=stored)
        return {"events": [event_to_wire(e) for e in events[:limit]], "last_seq": last,
                "has_more": len(events) > limit or more}

    async def history(self, user_id: str, cid: str, before_seq: int | None, limit: int) -> dict[str, Any]:
        conv = await self.member_conversation(user_id, cid)
        async with store_errors():
            if before_seq is None:
                # The newest page starts above the last stored seq; the checkpoint says where
                # to look for it, so the store reads only the few seqs past it.
                before_seq = await self.stores.events.last_seq(cid, at_least=conv.get("last_seq") or 0) + 1
            msgs = await self.stores.events.messages_before(cid, before_seq, limit + 1)
        return {"messages": [event_to_wire(m) for m in msgs[:limit]], "has_more": len(msgs) > limit}

    async def read_visible(self, user_id: str, cid: str, after: int, limit: int) -> tuple[list[dict], int, bool]:
        """Stored events after ``after`` that ``user_id`` was a member for, for a socket's
        replay and gap fill: (events, last seq scanned, more to scan?). A member removed and
        added back sees neither what happened in between nor, from before, anything past
        their removal; the removal event itself they do see."""
        async with store_errors():
            events = await self.stores.events.read_after(cid, after, limit)
            change = await self.stores.events.last_membership_change(cid, user_id, after)
        visible = change is None or change["kind"] == "member_added"
        out = []
        for ev in events:
            touches = user_id in (ev.get("user_ids") or ())
            if touches and ev["kind"] == "member_added":
                visible = True
            if visible:
                out.append(ev)
            if touches and ev["kind"] == "member_removed":
                visible = False
        scanned = events[-1]["seq"] if events else after
        return out, scanned, len(events) == limit

    # ---- changes: every one is an event sequenced by the conversation actor ------------------
    async def _unblocked(self, user_id: str, facts: FixedFacts) -> None:
        """Forbidden while a block stands between the two of a direct conversation: no message,
        edit or reaction reaches someone who blocked, or was blocked by, the writer."""
        if facts.kind == "direct" and user_id in facts.pair:
            other = facts.pair[1] if facts.pair[0] == user_id else facts.pair[0]
            # One store query per direct write. The conversation actor could hold its pair's
            # block state instead (loaded on activation, told by block/unblock) and save it;
            # reading the store here keeps an unblock effective at once on every replica,
            # with no invalidation to get right. Non-members skip this: the actor says forbidden.
            await self.blocks.check_direct(user_id, other)

    async def _change(self, cid: str, method: str, arg: dict[str, Any]) -> Any:
        return await self.router.call("conv", cid, method, arg)

    async def edit(self, user_id: str, cid: str, seq: int, body: str) -> dict[str, Any] | None:
        facts = await self.fixed_facts(cid)
        self.check_body(body, opaque=facts.e2ee)
        await self._unblocked(user_id, facts)
        return await self._change(cid, "edit", {"user": user_id, "target_seq": seq, "body": body})

    async def delete(self, user_id: str, cid: str, seq: int) -> dict[str, Any]:
        return await self._change(cid, "delete", {"user": user_id, "target_seq": seq})

    async def react(self, user_id: str, cid: str, seq: int, emoji: str, on: bool) -> dict[str, Any] | None:
        if not emoji.strip() or len(emoji) > 32 or any(c.isspace() for c in emoji):
            raise Invalid("emoji: 1-32 characters, no spaces")
        await self._unblocked(user_id, await self.fixed_facts(cid))
        return await self._change(cid, "react", {"user": user_id, "target_seq": seq, "emoji": emoji, "on": on})

    async def rename(self, user_id: str, cid: str, title: str) -> dict[str, Any] | None:
        title = title.strip()
        if not title or len(title) > 128:
            raise Invalid("title: 1-128 characters required")
        return await self._change(cid, "rename", {"user": user_id, "title": title})

    async def add_members(self, user_id: str, cid: str, user_ids: list[str]) -> dict[str, Any] | None:
        await self._require_users(sorted(set(user_ids)))
        return await self._change(cid, "add_members", {"user": user_id, "user_ids": list(user_ids)})

    async def remove_member(self, user_id: str, cid: str, target: str) -> dict[str, Any]:
        return await self._change(cid, "remove_member", {"user": user_id, "target": target})

    async def set_role(self, user_id: str, cid: str, target: str, role: str) -> dict[str, Any] | None:
        return await self._change(cid, "set_role", {"user": user_id, "target": target, "role": role})

    async def read(self, user_id: str, cid: str, seq: int) -> None:
        await self._change(cid, "read", {"user": user_id, "seq": seq})

    async def typing(self, user_id: str, cid: str, on: bool) -> None:
        await self._change(cid, "typing", {"user": user_id, "on": on})


def ahead_of_the_log(since: int, last: int) -> Invalid:
    """The answer to a resume from past a conversation's last event (``resume_point``): the
    socket goes on from that event, and says so."""
    return Invalid(f"since: {since} is past the conversation's last event ({last}); resuming after {last}")
