"""Message search (PROTOCOL.md, "Messages and events"; docs/protocol.md, "Changes", "Search")."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import Field

from .deps import Lim, Search, User
from .responses import AUTHED, WITH_INPUT, Event, Wire, errors

router = APIRouter()


class SearchPage(Wire):
    messages: list[Event] = Field(description="newest first, as the history page shows them (edits applied)")
    next_cursor: str | None = Field(description="pass as ?cursor= (with the same q) for the next page; "
                                                "null on the last")


@router.get("/v1/search", response_model=SearchPage, response_model_exclude_unset=True,
            responses=errors(*AUTHED, 404, *WITH_INPUT, 429))
async def search(uid: User, svc: Search, lim: Lim,
                 q: str = Query(min_length=1, max_length=256,
                                description="the words to find, all of them (case and width do not matter)"),
                 conversation_id: str | None = Query(None, min_length=1, max_length=128,
                                                     description="only this conversation (the caller must be "
                                                                 "a member); else all of the caller's"),
                 limit: int = Query(20, ge=1, le=100),
                 cursor: str | None = Query(None, min_length=1, max_length=64,
                                            description="next_cursor of the previous page")):
    # Limited once q is known to hold a word: a refused query costs no token.
    return await svc.search(uid, q, conversation_id, limit, cursor, admit=lambda: lim.search(uid))
