"""Conversations (PROTOCOL.md, "Conversations")."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import Field, StrictBool

from .deps import Body, Chat, Id, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Conversation, ConversationList, errors

router = APIRouter()


class CreateConversation(Body):
    kind: Literal["direct", "group"]
    members: list[Id] = Field(max_length=10_000)
    title: str | None = Field(default=None, max_length=1024)
    e2ee: StrictBool = Field(default=False, description="bodies are end-to-end encrypted ciphertext, "
                             "stored and relayed untouched; fixed at creation")


@router.post("/v1/conversations", status_code=201, response_model=Conversation,
             responses={200: {"model": Conversation,
                              "description": "that direct conversation existed already (one per pair)"},
                        **errors(*AUTHED, 403, 404, *WITH_BODY)})
async def create_conversation(body: CreateConversation, uid: User, svc: Chat):
    conv, created = await svc.create_conversation(uid, body.kind, body.members, body.title, body.e2ee)
    return JSONResponse(conv, status_code=201 if created else 200)


# Unset fields stay out: a last_message carries ``deleted`` only when it was deleted.
@router.get("/v1/conversations", response_model=ConversationList, response_model_exclude_unset=True,
            responses=errors(*AUTHED, *WITH_INPUT))
async def list_conversations(uid: User, svc: Chat, cursor: str | None = Query(None, max_length=200),
                             limit: int = Query(50, ge=1, le=200)):
    return await svc.list_conversations(uid, cursor, limit)


@router.get("/v1/conversations/{cid}", response_model=Conversation, response_model_exclude_unset=True,
            responses=errors(*AUTHED, 404, *WITH_INPUT))
async def get_conversation(cid: str, uid: User, svc: Chat):
    return svc.conversation_wire(await svc.member_conversation(uid, cid), uid)
