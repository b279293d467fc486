"""Operations: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from raychat.errors import Unavailable

from ..context import context

router = APIRouter()


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz():
    ctx = context()
    try:
        await ctx.stores.ping()
        await ctx.presence.ping()
    except Exception:
        raise Unavailable("a store is unreachable") from None
    return {"status": "ready"}
