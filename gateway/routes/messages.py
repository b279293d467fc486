"""Messages and the event log (PROTOCOL.md, "Messages and events")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from actors.events import event_to_wire

from .deps import Body, Chat, Id, User

router = APIRouter()


class SendBody(Body):
    client_msg_id: Id
    body: str
    attachments: list[Id] = Field(default_factory=list, max_length=10)
    reply_to: Annotated[int, Field(ge=1)] | None = None


@router.post("/v1/conversations/{cid}/messages", status_code=201)
async def send_message(cid: str, body: SendBody, uid: User, svc: Chat):
    ev = await svc.send(uid, cid, body.client_msg_id, body.body, body.attachments, body.reply_to)
    return event_to_wire(ev)


@router.get("/v1/conversations/{cid}/events")
async def events(cid: str, uid: User, svc: Chat, after_seq: int = Query(0, ge=0),
                 limit: int = Query(100, ge=1, le=1000)):
    return await svc.events_after(uid, cid, after_seq, limit)


@router.get("/v1/conversations/{cid}/messages")
async def history(cid: str, uid: User, svc: Chat, before_seq: int | None = Query(None, ge=1),
                  limit: int = Query(50, ge=1, le=200)):
    return await svc.history(uid, cid, before_seq, limit)
