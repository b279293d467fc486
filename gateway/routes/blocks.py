"""Blocking other users (PROTOCOL.md, "Accounts"; the rules are in gateway/block_service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from .deps import Blocks, Body, Id, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Wire, errors

router = APIRouter()


class BlockBody(Body):
    user_id: Id


class BlockList(Wire):
    user_ids: list[str]


@router.post("/v1/users/me/blocks", status_code=204, response_class=Response,
             responses=errors(*AUTHED, 404, *WITH_BODY))
async def block(body: BlockBody, uid: User, svc: Blocks):
    """Block a user (idempotent): while a block stands either way, neither of you can open or
    write in your direct conversation. Groups are unaffected."""
    await svc.block(uid, body.user_id)
    return Response(status_code=204)


@router.delete("/v1/users/me/blocks/{user_id}", status_code=204, response_class=Response,
               responses=errors(*AUTHED, *WITH_INPUT))
async def unblock(user_id: str, uid: User, svc: Blocks):
    """Unblock (idempotent); takes effect at once."""
    await svc.unblock(uid, user_id)
    return Response(status_code=204)


@router.get("/v1/users/me/blocks", response_model=BlockList, responses=errors(*AUTHED))
async def blocked(uid: User, svc: Blocks):
    return await svc.blocked(uid)
