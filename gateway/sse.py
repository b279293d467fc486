"""Server-Sent Events ``GET /v1/stream`` (PROTOCOL.md, "Server-Sent Events").

The same connection machinery as a WebSocket (gateway/conn.py: ordered, deduped,
gap-filled), written as SSE messages: ``event: <type>``, ``data: <frame json>`` and, for
conversation events, ``id: <cid>:<seq>`` so that ``Last-Event-ID`` resumes. A comment
line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import AsyncIterator

from actors.events import MAX_SEQ, dumps
from raychat import logs
from raychat.errors import ChatError, Invalid

from .chat_service import ahead_of_the_log
from .conn import Conn, SlowConsumer
from .context import Context

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
_BUFFER = 256          # SSE messages waiting for the client before the Conn queue takes the strain


def parse_since(since: str | None, last_event_id: str | None) -> dict[str, int]:
    """``cid:seq,cid:seq`` plus a ``Last-Event-ID`` of ``cid:seq`` (it wins for its cid)."""
    out: dict[str, int] = {}
    parts = [p for p in (since or "").split(",") if p]
    if len(parts) > 1000:
        raise Invalid("since: at most 1000 conversations")
    for label, items in (("since", parts), ("Last-Event-ID", [last_event_id] if last_event_id else [])):
        for item in items:
            cid, sep, seq = item.strip().rpartition(":")
            # isdigit() alone admits "²", which int() refuses; MAX_SEQ is what the store can hold.
            if not sep or not cid or not (seq.isascii() and seq.isdigit()) or len(cid) > 128 \
                    or int(seq) > MAX_SEQ:
                raise Invalid(f"{label}: expected conversation_id:seq")
            out[cid] = int(seq)
    return out


def sse_message(frame_text: str) -> str:
    frame = json.loads(frame_text)
    lines = [f"event: {frame.get('type', 'message')}"]
    if frame.get("type") == "event":
        lines.append(f"id: {frame['conversation_id']}:{frame['seq']}")
    lines.append(f"data: {frame_text}")
    return "\n".join(lines) + "\n\n"


async def open_stream(ctx: Context, user_id: str, since: dict[str, int],
                      expires_at: float = float("inf")) -> AsyncIterator[str]:
    """Register a connection and return the SSE body; it cleans up when the client leaves."""
    buffer: asyncio.Queue[str] = asyncio.Queue(_BUFFER)
    read = functools.partial(ctx.chat.read_visible, user_id)
    conn = Conn(ctx.hub.new_socket_id(), user_id, buffer.put, read, ctx.settings.socket_queue_max,
                transport="sse", clock=ctx.accounts.clock)
    logs.detached(ctx.hub.start)        # its tasks outlive this stream: not in its log context
    ctx.hub.add(conn)
    writer: asyncio.Task | None = None
    try:
        conn.send(dumps({"type": "welcome", "user_id": user_id, "session_id": conn.socket_id}))
        for cid, seq in since.items():
            try:
                start = await ctx.chat.resume_point(user_id, cid, seq)
            except ChatError as exc:
                conn.send(dumps({"type": "error", **exc.to_dict(), "ref": cid}))
                continue
            if start < seq:
                conn.send(dumps({"type": "error", **ahead_of_the_log(seq, start).to_dict(), "ref": cid}))
            conn.delivered[cid] = max(conn.delivered.get(cid, 0), start)
            conn.sync(cid, start)
        await ctx.hub.connect(conn)
        # Only now does anything leave: welcome promises live delivery, and from here on
        # the session knows this connection, so no event can fall between the two.
        writer = asyncio.get_running_loop().create_task(conn.run_writer())
    except BaseException:
        await _close(ctx, conn, writer)
        raise
    return _body(ctx, conn, writer, buffer, expires_at)


async def _body(ctx: Context, conn: Conn, writer: asyncio.Task, buffer: asyncio.Queue,
                expires_at: float) -> AsyncIterator[str]:
    clock = ctx.accounts.clock
    try:
        while True:
            left = expires_at - clock.now()
            if left <= 0:
                # As a WebSocket is closed at its token's expiry: a stream must not outlive a
                # revoked session. The client reconnects with a fresh token and Last-Event-ID.
                yield sse_message(dumps({"type": "error", "code": "unauthorized",
                                         "message": "access token expired: reconnect with a new one"}))
                return
            get = asyncio.ensure_future(buffer.get())
            done, _ = await asyncio.wait({get, writer}, timeout=min(KEEPALIVE_S, left),
                                         return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                yield sse_message(get.result())
                continue
            get.cancel()
            if expires_at - clock.now() <= 0:
                continue
            if writer in done:
                exc = writer.exception()
                if isinstance(exc, SlowConsumer):
                    yield ": too slow a consumer, reconnect with Last-Event-ID\n\n"
                elif exc is not None:
                    log.warning("stream writer failed: %r", exc)
                return
            yield ": keep-alive\n\n"
    finally:
        await _close(ctx, conn, writer)


async def _close(ctx: Context, conn: Conn, writer: asyncio.Task | None) -> None:
    conn.close()
    ctx.hub.remove(conn)
    if writer is not None:
        writer.cancel()
    await ctx.hub.disconnect(conn)
