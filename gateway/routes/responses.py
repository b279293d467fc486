"""Response bodies and documented errors, for ``GET /openapi.json`` (PROTOCOL.md, "HTTP").

Each route names its success body with ``response_model=`` and its failures with
``responses=errors(...)``. Handlers still return plain dicts, which FastAPI checks against the model.
Response models derive from ``Wire``, which forbids undeclared fields: a field added to a wire dict
but not to its model fails loudly (a 500 in the first test that meets it) instead of going out
undocumented, or being dropped without a word. Fields that only some bodies carry are optional and
left out of the body when absent (``response_model_exclude_unset=True`` on those routes), never sent
as null; ``Optional[...]`` without ``SkipJsonSchema`` means the field may really be null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

from raychat.errors import CODES

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"},
                                 description="ISO 8601 UTC, millisecond precision, trailing Z")]
ErrorCode = Literal[CODES]  # type: ignore[valid-type]


class Wire(BaseModel):
    """Base of every response body: exactly the fields declared."""
    model_config = ConfigDict(extra="forbid")


class Error(Wire):
    """Every HTTP error body (PROTOCOL.md, "Errors")."""
    code: ErrorCode
    message: str
    # Present only with rate_limited and unavailable; absent (never null) otherwise.
    retry_after_ms: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = None


_MEANING = {
    400: "invalid: the request breaks the schema or a limit",
    401: "unauthorized: missing, expired, malformed or forged credentials",
    403: "forbidden: authenticated but not allowed",
    404: "not_found: no such object, or one the caller may not know exists",
    409: "conflict: the object exists already",
    413: "too_large: body over its limit",
    415: "unsupported_media_type: content type not allowed",
    422: "invalid: a field breaks the schema or a limit; message names the field",
    429: "rate_limited: slow down; retry_after_ms (and Retry-After) say how long",
    503: "unavailable: a store is down; nothing was accepted; retry later",
    500: "internal: a bug (never for bad input); every route may answer it",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can fail with these statuses, each with the Error body."""
    return {status: {"model": Error, "description": _MEANING[status]} for status in statuses}


# The failures every route with a given trait can have; routes add their own (404, 409...).
AUTHED = (401, 503)          # takes a bearer token (verified, then the stores are read)
WITH_INPUT = (422,)          # takes query or path parameters
WITH_BODY = (413, 415, 422)  # takes a JSON body (415: not sent as application/json)


# ---- operations -------------------------------------------------------------------------

class Health(Wire):
    status: Literal["ok"]


class Ready(Wire):
    status: Literal["ready"]


# ---- accounts ---------------------------------------------------------------------------

class Registered(Wire):
    user_id: str
    username: str


class TokenPair(Wire):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds until access_token expires")
    refresh_token: str = Field(description="opaque, single use: POST /v1/auth/refresh spends it for a new pair")
    user_id: str


class PublicProfile(Wire):
    user_id: str
    username: str
    display_name: str | None


class Profile(PublicProfile):
    """The caller's own profile."""
    created_at: Timestamp


class PresenceEntry(Wire):
    status: Literal["online", "offline"]
    last_seen: Timestamp | None


class PresenceMap(RootModel[dict[str, PresenceEntry]]):
    """``{user_id: {status, last_seen}}`` for each user asked about."""


# ---- conversations ----------------------------------------------------------------------

Role = Literal["owner", "admin", "member"]
EventKind = Literal["message", "edit", "delete", "reaction", "member_added", "member_removed",
                    "role_changed", "title_changed"]


class LastMessage(Wire):
    """The newest message that a conversation list shows, edits applied, its body cut to 200
    characters; a deleted one has no body and ``deleted: true``."""
    seq: int = Field(ge=1)
    sender_id: str
    kind: EventKind
    body: str | None
    created_at: Timestamp
    deleted: Literal[True] | SkipJsonSchema[None] = None


class Conversation(Wire):
    conversation_id: str
    kind: Literal["direct", "group"]
    title: str | None
    members: list[str]
    roles: dict[str, Role]
    created_at: Timestamp
    last_seq: int = Field(ge=0)
    last_activity_at: Timestamp
    e2ee: bool
    last_message: LastMessage | None
    # The caller's read cursor; absent where the answer is not for one reader (on create).
    read_seq: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = None
    unread_count: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = None


class ConversationList(Wire):
    conversations: list[Conversation]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


# ---- events -----------------------------------------------------------------------------

class Event(Wire):
    """A sequenced change to a conversation; which optional fields it has depends on ``kind``."""
    conversation_id: str
    seq: int = Field(ge=1)
    kind: EventKind
    sender_id: str
    client_msg_id: str | None = Field(None, description="the sender's idempotency key; null on changes")
    created_at: Timestamp
    body: str | SkipJsonSchema[None] = None
    attachments: list[str] | SkipJsonSchema[None] = None
    reply_to: Annotated[int, Field(ge=1)] | None = None
    target_seq: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = None
    emoji: str | SkipJsonSchema[None] = None
    on: bool | SkipJsonSchema[None] = None
    user_ids: list[str] | SkipJsonSchema[None] = None
    role: Role | SkipJsonSchema[None] = None
    title: str | SkipJsonSchema[None] = None
    # A stored message as history shows it: edits applied, deletion marked, reactions counted.
    edited_at: Timestamp | SkipJsonSchema[None] = None
    deleted: bool | SkipJsonSchema[None] = None
    reactions: dict[str, Annotated[int, Field(ge=1)]] | SkipJsonSchema[None] = Field(
        None, description="{emoji: how many members reacted with it}")


# One Server-Sent Events message of GET /v1/stream, as a client's SSE parser yields it. Keep-alive
# comment lines are not messages.
SSE_MESSAGE = {
    "type": "object",
    "required": ["event", "data"],
    "additionalProperties": False,
    "properties": {
        "event": {"type": "string", "description": "the server frame's type (welcome, event, receipt, typing, "
                                                   "presence, error), as on the WebSocket"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "the server frame, as the WebSocket would send it"},
        "id": {"type": "string", "pattern": "^.+:[0-9]+$",
               "description": "conversation_id:seq, on conversation events; send it back as Last-Event-ID"},
    },
}


class EventsPage(Wire):
    events: list[Event] = Field(description="in seq order")
    last_seq: int = Field(ge=0)
    has_more: bool


class HistoryPage(Wire):
    messages: list[Event] = Field(description="newest first, edits applied, deleted ones without body")
    has_more: bool
