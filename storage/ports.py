"""The storage ports. Each method's docstring is its contract; every adapter passes
the contract suite in ``tests/storage/``.

Records are plain dicts (they cross Ray calls). Times are timezone-aware UTC
``datetime`` objects. Every method may raise ``StoreUnavailable`` (see errors.py)
within the adapter's configured timeout; none hangs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, Sequence

Event = dict[str, Any]
"""{conversation_id, seq, kind, sender_id, client_msg_id, body, attachments, reply_to, created_at, ...}"""

Conversation = dict[str, Any]
"""{conversation_id, kind: "direct"|"group", title, members: [user_id], roles: {user_id: role},
created_at, last_seq, last_activity_at}"""

User = dict[str, Any]
"""{user_id, username, password_hash, display_name, created_at}"""


class EventStore(Protocol):
    async def append(self, events: Sequence[Event]) -> None:
        """Store ``events`` (all of one conversation, ascending seq) durably, in order.

        Returns once every event is durable under the configured write concern.
        Stops at the first event a unique index refuses and raises
        ``DuplicateEvent(key, index)``: events before ``index`` are stored, the rest are not.
        ``key`` is "seq" for (conversation_id, seq) and "client_msg_id" for
        (conversation_id, sender_id, client_msg_id). Events whose client_msg_id is None
        are never deduplicated.
        """

    async def last_seq(self, conversation_id: str) -> int:
        """The highest stored seq of the conversation, 0 if it has none."""

    async def read_after(self, conversation_id: str, after_seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with seq > after_seq, ascending."""

    async def read_before(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Event]:
        """Up to ``limit`` events with seq < before_seq (all, if None), descending."""

    async def find_client_msg(self, conversation_id: str, sender_id: str, client_msg_id: str) -> Event | None:
        """The event that sender stored under that client_msg_id, or None."""


class ConversationStore(Protocol):
    async def create(self, conversation: Conversation, direct_key: str | None = None) -> tuple[Conversation, bool]:
        """Insert a conversation. With a ``direct_key`` (one per pair of users), an existing
        conversation with that key wins: returns (existing, False) and inserts nothing.
        Otherwise returns (conversation, True)."""

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""

    async def list_for_user(self, user_id: str, before: datetime | None, limit: int) -> list[Conversation]:
        """Conversations with ``user_id`` among members, most recently active first,
        those active strictly before ``before`` when given. One query."""

    async def record_activity(self, conversation_id: str, last_seq: int, at: datetime) -> None:
        """Raise last_seq and last_activity_at to these values; never lowers them."""


class UserStore(Protocol):
    async def create(self, user: User) -> None:
        """Insert a user. Raises ``DuplicateKey("username")`` if the username is taken."""

    async def by_username(self, username: str) -> User | None:
        """The user with that (already case-folded) username, or None."""

    async def by_id(self, user_id: str) -> User | None:
        """The user, or None."""


class PresenceStore(Protocol):
    async def set_online(self, user_id: str, ttl_s: int) -> None:
        """Mark online; the mark expires by itself after ``ttl_s`` unless refreshed."""

    async def refresh(self, user_ids: Sequence[str], ttl_s: int) -> None:
        """Extend the online mark of each user that is still online, in one round trip."""

    async def set_offline(self, user_id: str, last_seen: datetime) -> None:
        """Clear the online mark and record last_seen."""

    async def get(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{user_id: {"status": "online"|"offline", "last_seen": datetime|None}} for every id, one round trip."""


class Health(Protocol):
    async def ping(self) -> None:
        """Return if the server answers within the timeout, else raise StoreUnavailable."""
