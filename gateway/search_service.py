"""Message search (docs/protocol.md, "Changes", "Search"). A read: it goes to the store directly
(CQRS), over the conversations the caller is a member of right now.

Messages are indexed by the conversation actor as they are stored (raychat/terms.py); a query
goes through the same rules, and a message matches when it has every term of the query.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from actors.events import event_to_wire
from raychat.errors import Invalid
from raychat.terms import query_terms

from .chat_service import ChatService
from .service_common import store_errors

# How many of the caller's conversations a search without conversation_id looks through: the most
# recently active ones. It bounds the query (one $in entry, one index range, per conversation);
# a search in an older conversation names it with conversation_id.
MAX_SEARCHED_CONVERSATIONS = 1000


class SearchService:
    def __init__(self, stores: Any, chat: ChatService):
        self.stores = stores
        self.chat = chat

    async def search(self, user_id: str, q: str, conversation_id: str | None, limit: int,
                     cursor: str | None, admit: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
        """{messages, next_cursor}: messages with every word of ``q`` that ``user_id`` can read,
        newest first, as the history page shows them (edits applied). ``admit`` (the rate limit)
        runs once ``q`` is known to hold a word, before anything is read."""
        wanted = query_terms(q)
        if not wanted:
            raise Invalid("q: has no word to search for (only spaces, punctuation or symbols)")
        if admit is not None:
            await admit()
        if conversation_id is not None:
            # The same answer as every other read of a conversation the caller is not in.
            await self.chat.member_conversation(user_id, conversation_id)
            ids = [conversation_id]
        else:
            async with store_errors():
                ids = await self.stores.conversations.ids_for_member(user_id, MAX_SEARCHED_CONVERSATIONS)
        try:
            async with store_errors():
                found, next_cursor = await self.stores.events.search(ids, wanted, cursor, limit)
        except ValueError:
            raise Invalid("cursor: not a cursor this server gave out") from None
        return {"messages": [event_to_wire(ev) for ev in found], "next_cursor": next_cursor}
