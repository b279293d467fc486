"""``GET /v1/stream``: Server-Sent Events for receive-only clients."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from ..context import context
from ..sse import open_stream, parse_since
from .deps import BearerAccess
from .responses import AUTHED, SSE_MESSAGE, WITH_INPUT, errors

router = APIRouter()


# ASCII, and short enough that even percent-encoded the URL fits the 64 KiB request line of Serve's
# proxy (past it the proxy itself answers a bare-text 400).
Since = Annotated[str | None, Query(max_length=20_000, pattern=r"^[!-~]*$",
                                    description="cid:seq,cid:seq (at most 1000 entries), as hello.since")]


@router.get("/v1/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": SSE_MESSAGE}},
                             "description": "server frames as SSE messages, and a comment line every 15 s"},
                       **errors(*AUTHED, *WITH_INPUT)})
async def stream(access: BearerAccess, since: Since = None,
                 last_event_id: Annotated[str | None, Header(max_length=200)] = None):
    body = await open_stream(context(), access.user_id, parse_since(since, last_event_id), access.expires_at)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
