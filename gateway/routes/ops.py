"""Operations: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from raychat.errors import Unavailable

from ..context import context
from .responses import Health, Ready, errors

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses=errors(503))
async def readyz():
    ctx = context()
    try:
        await ctx.stores.ping()
        await ctx.presence.ping()
    except Exception:
        raise Unavailable("a store is unreachable") from None
    return {"status": "ready"}
