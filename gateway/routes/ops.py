"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from raychat import metrics as exposition
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


@router.get("/metrics", response_class=Response,     # media type None: errors stay JSON
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4: this replica's metrics, every "
                                            "ActorHost's (labelled host) and the push job outcomes"},
                       **errors(503)})
async def metrics():
    # No credentials: like /healthz it is for the operator's network; keep it off the public
    # route at the proxy (docs/operations.md). It names no user and carries no content.
    ctx = context()
    if ctx.metrics is None:
        raise Unavailable("metrics are not set up on this gateway")
    return PlainTextResponse(await ctx.metrics.exposition(), media_type=exposition.CONTENT_TYPE)
