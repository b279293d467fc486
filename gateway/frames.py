"""Client WebSocket frames (PROTOCOL.md, "WebSocket"): parsing and validation.

``parse_frame`` turns one text frame into a typed model or raises a ChatError
whose message names the offending field. Unknown fields are ignored, so a
forged ``sender_id`` or ``seq`` in a frame never reaches the actors.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from actors.events import MAX_SEQ
from raychat.errors import Invalid

Id = Annotated[str, Field(min_length=1, max_length=128)]


def body_optional_with_attachments(data):
    """A photo needs no caption: with attachments, a missing ``body`` is "". Without them it
    stays required, so leaving it out is ``invalid`` naming ``body`` before anything else."""
    if isinstance(data, dict) and "body" not in data and data.get("attachments"):
        return {**data, "body": ""}
    return data


class _Frame(BaseModel):
    # Strict, as the HTTP bodies' integers are (docs/protocol.md, "Integers in JSON bodies are
    # integers"): a frame's "1", 1.0 or true is refused where a number or a boolean belongs,
    # never turned into one. A client's wrong type is a bug to report, not to store as a guess.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Hello(_Frame):
    type: Literal["hello"]
    token: Annotated[str, Field(min_length=1, max_length=8192)]
    since: dict[Id, Annotated[int, Field(ge=0, le=MAX_SEQ)]] = Field(default_factory=dict, max_length=1000)


class Send(_Frame):
    type: Literal["send"]
    conversation_id: Id
    client_msg_id: Id
    body: str                  # may be empty (or left out) when attachments is not
    attachments: list[Id] = Field(default_factory=list, max_length=10)
    reply_to: Annotated[int, Field(ge=1, le=MAX_SEQ)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _caption_optional(cls, data):
        return body_optional_with_attachments(data)


class Sync(_Frame):
    type: Literal["sync"]
    conversation_id: Id
    after_seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]


class Ping(_Frame):
    type: Literal["ping"]


class Auth(_Frame):
    """A fresh access token for the same user, sent before the current one expires: the socket
    then lives until the new token's expiry (answer: ``authed {expires_in}``)."""
    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=8192)]


Emoji = Annotated[str, Field(min_length=1, max_length=32)]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]


class Edit(_Frame):
    type: Literal["edit"]
    conversation_id: Id
    seq: Seq
    body: str
    ref: Id | None = None


class Delete(_Frame):
    type: Literal["delete"]
    conversation_id: Id
    seq: Seq
    ref: Id | None = None


class React(_Frame):
    type: Literal["react"]
    conversation_id: Id
    seq: Seq
    emoji: Emoji
    on: bool = True
    ref: Id | None = None


class Read(_Frame):
    type: Literal["read"]
    conversation_id: Id
    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]


class Typing(_Frame):
    type: Literal["typing"]
    conversation_id: Id
    on: bool


ClientFrame = Annotated[Union[Hello, Send, Sync, Ping, Edit, Delete, React, Read, Typing, Auth],
                        Field(discriminator="type")]
_adapter = TypeAdapter(ClientFrame)
KNOWN_TYPES = ("hello", "send", "sync", "ping", "edit", "delete", "react", "read", "typing", "auth")


class NotJson(Exception):
    """The frame is not JSON: the socket is closed with 1007."""


def load(text: str):
    """The frame's JSON value: an object, if the client follows the protocol (``parse_frame``
    says ``invalid`` to anything else, as to any other frame it cannot take)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise NotJson(str(exc)) from None


def parse_frame(obj):
    if not isinstance(obj, dict):
        raise Invalid("frame: must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise Invalid("type: missing or not a string")
    if kind not in KNOWN_TYPES:
        raise Invalid(f"type: unknown frame type {kind[:40]!r}")
    try:
        return _adapter.validate_python(obj)
    except ValidationError as exc:
        raise Invalid(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """'field: problem' for the first error, the way every error message names its field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "frame"
    # A tagged union prefixes the tag to the location; the client knows its own frame type.
    parts = loc.split(".", 1)
    if len(parts) == 2 and parts[0] in KNOWN_TYPES:
        loc = parts[1]
    return f"{loc}: {err['msg']}"
