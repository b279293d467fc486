"""Conversations (PROTOCOL.md, "Conversations")."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from .deps import Body, Chat, Id, User

router = APIRouter()


class CreateConversation(Body):
    kind: Literal["direct", "group"]
    members: list[Id] = Field(max_length=10_000)
    title: str | None = Field(default=None, max_length=1024)


@router.post("/v1/conversations", status_code=201)
async def create_conversation(body: CreateConversation, uid: User, svc: Chat):
    conv, created = await svc.create_conversation(uid, body.kind, body.members, body.title)
    return JSONResponse(conv, status_code=201 if created else 200)


@router.get("/v1/conversations")
async def list_conversations(uid: User, svc: Chat, cursor: str | None = Query(None, max_length=64),
                             limit: int = Query(50, ge=1, le=200)):
    return await svc.list_conversations(uid, cursor, limit)


@router.get("/v1/conversations/{cid}")
async def get_conversation(cid: str, uid: User, svc: Chat):
    return svc.conversation_wire(await svc.member_conversation(uid, cid))
