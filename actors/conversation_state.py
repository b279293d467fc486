"""The pure heart of a conversation: membership, dedupe and seq assignment.

No I/O here. The conversation actor feeds it commands one batch at a time and
writes what it returns; the store's unique indexes stay the final word (a
dedupe miss here is caught by the (conversation_id, sender_id, client_msg_id)
index, a stale writer by (conversation_id, seq)).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from raychat.errors import ChatError, Conflict, Forbidden, Invalid
from raychat.terms import terms as message_terms

from .roster import Roster


@dataclass(frozen=True, slots=True)
class SendCommand:
    sender_id: str
    client_msg_id: str
    body: str
    attachments: tuple[str, ...] = ()
    reply_to: int | None = None
    deadline: float | None = None      # wall-clock time after which the sender no longer waits

    def digest(self) -> str:
        return content_digest(self.body, self.attachments, self.reply_to)


def content_digest(body: Any, attachments: Any, reply_to: Any) -> str:
    """Same digest for the same content, so a retry is told apart from a reused id."""
    canon = json.dumps([body, list(attachments or ()), reply_to], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canon.encode(), digest_size=12).hexdigest()


def event_digest(ev: dict[str, Any]) -> str:
    return content_digest(ev.get("body"), ev.get("attachments"), ev.get("reply_to"))


class DedupeWindow:
    """The most recent client_msg_ids, oldest dropped first. A cache: misses go to the store index."""

    __slots__ = ("_cap", "_items")

    def __init__(self, capacity: int):
        self._cap = capacity
        self._items: dict[tuple[str, str], tuple[str, dict]] = {}

    def get(self, key: tuple[str, str]) -> tuple[str, dict] | None:
        return self._items.get(key)

    def put(self, key: tuple[str, str], digest: str, event: dict) -> None:
        self._items.pop(key, None)
        self._items[key] = (digest, event)
        if len(self._items) > self._cap:
            del self._items[next(iter(self._items))]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class Admission:
    """What to do with one send: exactly one of ``event`` (already stored), ``error``, or ``new``."""
    event: dict | None = None
    error: ChatError | None = None
    new: SendCommand | None = None


class ConversationState:
    """Everything an activated conversation keeps in memory: small, so idle actors stay cheap."""

    __slots__ = ("conversation_id", "roster", "title", "e2ee", "last_seq", "state_seq", "message_count",
                 "_dedupe", "_dedupe_cap")

    def __init__(self, conversation_id: str, roster: Roster, last_seq: int, dedupe_capacity: int, *,
                 title: str | None = None, e2ee: bool = False, state_seq: int | None = None,
                 message_count: int = 0):
        self.conversation_id = conversation_id
        self.roster = roster
        self.title = title
        self.e2ee = e2ee
        self.last_seq = last_seq
        self.state_seq = last_seq if state_seq is None else state_seq   # projections applied up to here
        self.message_count = message_count
        self._dedupe: DedupeWindow | None = None   # created on the first send: idle actors stay small
        self._dedupe_cap = dedupe_capacity

    @property
    def kind(self) -> str:
        return self.roster.kind

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self.roster.roles)

    def is_member(self, user_id: str) -> bool:
        return user_id in self.roster

    def admit(self, cmd: SendCommand) -> Admission:
        if not self.is_member(cmd.sender_id):
            return Admission(error=Forbidden("not a member of this conversation", ref=cmd.client_msg_id))
        hit = self._dedupe.get((cmd.sender_id, cmd.client_msg_id)) if self._dedupe else None
        if hit is not None:
            digest, event = hit
            if digest != cmd.digest():
                return Admission(error=Conflict("client_msg_id reused with different content",
                                                ref=cmd.client_msg_id))
            return Admission(event=event)
        if cmd.reply_to is not None and not (1 <= cmd.reply_to <= self.last_seq):
            return Admission(error=Invalid("reply_to: no such message in this conversation", ref=cmd.client_msg_id))
        return Admission(new=cmd)

    def remember(self, event: dict) -> None:
        if event.get("client_msg_id") is None:
            return
        if self._dedupe is None:
            self._dedupe = DedupeWindow(self._dedupe_cap)
        self._dedupe.put((event["sender_id"], event["client_msg_id"]), event_digest(event), event)

    def apply(self, ev: dict) -> None:
        """Fold one stored event into the in-memory state (also used to replay after a crash)."""
        kind = ev["kind"]
        if kind == "message":
            self.message_count += 1
        elif kind == "member_added":
            self.roster.add(ev["user_ids"])
        elif kind == "member_removed":
            for u in ev["user_ids"]:
                self.roster.remove(u)
        elif kind == "role_changed":
            for u in ev["user_ids"]:
                self.roster.set_role(u, ev["role"])
        elif kind == "title_changed":
            self.title = ev["title"]
        self.last_seq = max(self.last_seq, ev["seq"])


def message_draft(c: SendCommand, *, e2ee: bool = False) -> dict:
    draft = {"kind": "message", "sender_id": c.sender_id, "client_msg_id": c.client_msg_id, "body": c.body,
             "attachments": list(c.attachments), "reply_to": c.reply_to}
    # Search indexes the words (DESIGN.md, "Search"), except in e2ee conversations: the body is
    # ciphertext there, whose "words" are noise, and terms of a plaintext would be a leak.
    if not e2ee:
        draft["terms"] = message_terms(c.body)
    return draft


def number(conversation_id: str, drafts: list[dict], first_seq: int, created_at: Any) -> list[dict]:
    """Events for ``drafts`` numbered from ``first_seq`` with no gap."""
    return [{"conversation_id": conversation_id, "seq": first_seq + i, **d, "created_at": created_at}
            for i, d in enumerate(drafts)]
