"""Messages and the event log (PROTOCOL.md, "Messages and events")."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field, StrictInt, model_validator

from actors.events import MAX_SEQ, event_to_wire
from gateway.frames import body_optional_with_attachments

from ..metrics import ACK_LATENCY
from .deps import Body, Chat, Id, Lim, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Event, EventsPage, HistoryPage, errors

router = APIRouter()


class SendBody(Body):
    client_msg_id: Id
    body: str = Field(description="may be empty (or left out) when attachments is not")
    attachments: list[Id] = Field(default_factory=list, max_length=10, description="media_ids from POST /v1/media")
    reply_to: Annotated[StrictInt, Field(ge=1, le=MAX_SEQ)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _caption_optional(cls, data):
        return body_optional_with_attachments(data)


@router.post("/v1/conversations/{cid}/messages", status_code=201, response_model=Event,
             response_model_exclude_unset=True, responses=errors(*AUTHED, 403, 404, 409, *WITH_BODY, 429))
async def send_message(cid: str, body: SendBody, uid: User, svc: Chat, lim: Lim):
    received_at = time.monotonic()
    await lim.message(uid, ref=body.client_msg_id)
    ev = await svc.send(uid, cid, body.client_msg_id, body.body, body.attachments, body.reply_to)
    ACK_LATENCY.labels("http").observe(time.monotonic() - received_at)
    return event_to_wire(ev)


@router.get("/v1/conversations/{cid}/events", response_model=EventsPage, response_model_exclude_unset=True,
            responses=errors(*AUTHED, 404, *WITH_INPUT))
async def events(cid: str, uid: User, svc: Chat, after_seq: int = Query(0, ge=0, le=MAX_SEQ),
                 limit: int = Query(100, ge=1, le=1000)):
    return await svc.events_after(uid, cid, after_seq, limit)


@router.get("/v1/conversations/{cid}/messages", response_model=HistoryPage, response_model_exclude_unset=True,
            responses=errors(*AUTHED, 404, *WITH_INPUT))
async def history(cid: str, uid: User, svc: Chat, before_seq: int | None = Query(None, ge=1, le=MAX_SEQ),
                  limit: int = Query(50, ge=1, le=200)):
    return await svc.history(uid, cid, before_seq, limit)
