"""Changes to conversations and messages (PROTOCOL.md, "Conversations" and "Messages and events").

Each change is a sequenced event; the answer is that event (200), or 204 when nothing
changed (adding a reaction one already has, renaming to the same title, adding members
who are already in).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import Field, StrictInt

from actors.events import MAX_SEQ, event_to_wire

from .deps import Body, Chat, Id, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Event, errors

router = APIRouter()

Seq = Annotated[int, Path(ge=1, le=MAX_SEQ)]


class RenameBody(Body):
    title: str = Field(max_length=1024)


class AddMembersBody(Body):
    user_ids: list[Id] = Field(min_length=1, max_length=1000)


class RoleBody(Body):
    role: Literal["owner", "admin", "member"]


class EditBody(Body):
    body: str


class ReactBody(Body):
    emoji: str = Field(min_length=1, max_length=32)


class ReadBody(Body):
    seq: StrictInt = Field(ge=0, le=MAX_SEQ)


# The answer is the event (200), or 204 when nothing changed. Non-members and missing roles are
# forbidden; an unknown conversation, message or member is not_found; a busy mailbox rate_limited.
CHANGED = {204: {"description": "nothing changed, so no event"}}
EVENT = dict(response_model=Event, response_model_exclude_unset=True)


def _answer(ev: dict[str, Any] | None):
    return Response(status_code=204) if ev is None else event_to_wire(ev)


@router.patch("/v1/conversations/{cid}", **EVENT, responses={**CHANGED, **errors(*AUTHED, 403, 404, *WITH_BODY, 429)})
async def rename(cid: str, body: RenameBody, uid: User, svc: Chat):
    return _answer(await svc.rename(uid, cid, body.title))


@router.post("/v1/conversations/{cid}/members", **EVENT,
             responses={**CHANGED, **errors(*AUTHED, 403, 404, *WITH_BODY, 429)})
async def add_members(cid: str, body: AddMembersBody, uid: User, svc: Chat):
    return _answer(await svc.add_members(uid, cid, body.user_ids))


@router.delete("/v1/conversations/{cid}/members/{member}", **EVENT,
               responses=errors(*AUTHED, 403, 404, *WITH_INPUT, 429))
async def remove_member(cid: str, member: str, uid: User, svc: Chat):
    return _answer(await svc.remove_member(uid, cid, member))


@router.patch("/v1/conversations/{cid}/members/{member}", **EVENT,
              responses={**CHANGED, **errors(*AUTHED, 403, 404, *WITH_BODY, 429)})
async def set_role(cid: str, member: str, body: RoleBody, uid: User, svc: Chat):
    return _answer(await svc.set_role(uid, cid, member, body.role))


@router.patch("/v1/conversations/{cid}/messages/{seq}", **EVENT,
              responses={**CHANGED, **errors(*AUTHED, 403, 404, *WITH_BODY, 429)})
async def edit(cid: str, seq: Seq, body: EditBody, uid: User, svc: Chat):
    return _answer(await svc.edit(uid, cid, seq, body.body))


@router.delete("/v1/conversations/{cid}/messages/{seq}", **EVENT,
               responses=errors(*AUTHED, 403, 404, *WITH_INPUT, 429))
async def delete(cid: str, seq: Seq, uid: User, svc: Chat):
    return _answer(await svc.delete(uid, cid, seq))


@router.post("/v1/conversations/{cid}/messages/{seq}/reactions", **EVENT,
             responses={**CHANGED, **errors(*AUTHED, 403, 404, *WITH_BODY, 429)})
async def react(cid: str, seq: Seq, body: ReactBody, uid: User, svc: Chat):
    return _answer(await svc.react(uid, cid, seq, body.emoji, True))


@router.delete("/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", **EVENT,
               responses={**CHANGED, **errors(*AUTHED, 403, 404, *WITH_INPUT, 429)})
async def unreact(cid: str, seq: Seq, emoji: str, uid: User, svc: Chat):
    return _answer(await svc.react(uid, cid, seq, emoji, False))


@router.post("/v1/conversations/{cid}/read", status_code=204, response_class=Response,
             responses=errors(*AUTHED, 403, 404, *WITH_BODY, 429))
async def read(cid: str, body: ReadBody, uid: User, svc: Chat):
    await svc.read(uid, cid, body.seq)
    return Response(status_code=204)
