"""The WebSocket endpoint ``/v1/ws`` (PROTOCOL.md, "WebSocket").

States: AWAIT_HELLO → LIVE → CLOSED. The first frame must be ``hello`` within
hello_timeout_s (or the handshake carried ``Authorization: Bearer``). In LIVE,
a reader parses frames and a writer (gateway/conn.py) sends everything the
client gets, in order. Close codes: 1003 binary, 1007 not JSON, 1008 policy
(auth, repeated invalid frames), 1009 frame too large, 1013 too slow a consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.events import dumps
from raychat.clock import iso
from raychat.errors import ChatError, Internal, Invalid, NotFound, RateLimited, Unauthorized

from .conn import Conn, SlowConsumer
from .frames import Hello, NotJson, Ping, Send, Sync, load, parse_frame

log = logging.getLogger(__name__)

MAX_INFLIGHT_SENDS = 256      # per socket; past this a send is answered rate_limited
INVALID_BURST = 10            # invalid frames tolerated in a burst before 1008
INVALID_REFILL_PER_S = 1.0


class Close(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def error_frame(exc: ChatError, ref: str | None = None) -> str:
    body = exc.to_dict()
    if ref is not None:
        body["ref"] = ref
    return dumps({"type": "error", **body})


class Session:
    def __init__(self, ws: WebSocket, ctx: Any):
        self.ws = ws
        self.ctx = ctx
        self.settings = ctx.settings
        self.accounts = ctx.accounts
        self.svc = ctx.chat
        self.hub = ctx.hub
        self.conn: Conn | None = None
        self.inflight = 0
        self.tasks: set[asyncio.Task] = set()
        self._budget = float(INVALID_BURST)
        self._budget_at = time.monotonic()

    async def run(self) -> None:
        await self.ws.accept()
        writer: asyncio.Task | None = None
        try:
            user_id, hello = await self._authenticate()
            self.conn = Conn(self.hub.new_socket_id(), user_id, self.ws.send_text, self.svc.read_after,
                             self.settings.socket_queue_max)
            self.hub.add(self.conn)
            writer = asyncio.get_running_loop().create_task(self.conn.run_writer())
            self.conn.send(dumps({"type": "welcome", "user_id": user_id, "session_id": self.conn.socket_id}))
            if hello is not None:
                await self._resume(hello.since)
            await self.hub.connect(self.conn)
            await self._read_loop(writer)
        except Close as c:
            await self._close(c.code, c.reason)
        except SlowConsumer:
            await self._close(1013, "too slow a consumer: reconnect and resume")
        except WebSocketDisconnect:
            pass
        except ChatError as exc:   # e.g. the hosts are unavailable while registering
            await self._send_now(error_frame(exc))
            await self._close(1013 if exc.code == "unavailable" else 1011, exc.message[:120])
        except Exception:
            log.exception("websocket handler failed")
            await self._close(1011, "internal error")
        finally:
            for t in self.tasks:
                t.cancel()
            if self.conn is not None:
                self.conn.close()
                self.hub.remove(self.conn)
                await self.hub.disconnect(self.conn)
            if writer is not None:
                writer.cancel()

    # ---- AWAIT_HELLO ------------------------------------------------------------------
    async def _authenticate(self) -> tuple[str, Hello | None]:
        header = self.ws.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise Close(1008, "authorization must be 'Bearer <token>'")
            return self._verify(token.strip()), None
        try:
            text = await asyncio.wait_for(self._receive_text(), self.settings.hello_timeout_s)
        except asyncio.TimeoutError:
            raise Close(1008, "no hello in time") from None
        frame = self._parse(text)
        if frame is None or not isinstance(frame, Hello):
            await self._send_now(error_frame(Unauthorized("the first frame must be hello")))
            raise Close(1008, "the first frame must be hello")
        return self._verify(frame.token), frame

    def _verify(self, token: str) -> str:
        try:
            return self.accounts.authenticate(token)
        except Unauthorized as exc:
            raise Close(1008, f"unauthorized: {exc.message}"[:120]) from None

    async def _resume(self, since: dict[str, int]) -> None:
        for cid, seq in since.items():
            try:
                await self.svc.member_conversation(self.conn.user_id, cid)
            except NotFound as exc:
                self.conn.send(error_frame(exc, ref=cid))
                continue
            self.conn.delivered[cid] = max(self.conn.delivered.get(cid, 0), seq)
            self.conn.sync(cid, seq)

    # ---- LIVE -------------------------------------------------------------------------
    async def _read_loop(self, writer: asyncio.Task) -> None:
        while True:
            receive = asyncio.ensure_future(self._receive_text())
            done, _ = await asyncio.wait({receive, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                receive.cancel()
                writer.result()      # raises SlowConsumer or the send error
                return
            frame = self._parse(receive.result())
            if frame is not None:
                self._dispatch(frame)

    async def _receive_text(self) -> str:
        msg = await self.ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        if msg.get("bytes") is not None:
            raise Close(1003, "binary frames are not accepted")
        text = msg.get("text")
        if text is None:
            raise Close(1003, "unsupported frame")
        # len() counts characters; a UTF-8 byte is at most one, so only long texts need encoding.
        if len(text) * 4 > self.settings.max_frame_bytes and \
                len(text.encode("utf-8", "surrogatepass")) > self.settings.max_frame_bytes:
            raise Close(1009, f"frame over {self.settings.max_frame_bytes} bytes")
        return text

    def _parse(self, text: str):
        """A valid frame, or None after answering the client; raises Close past the invalid budget."""
        try:
            obj = load(text)
        except NotJson:
            raise Close(1007, "frames must be JSON objects") from None
        try:
            return parse_frame(obj)
        except ChatError as exc:
            self._spend_invalid()
            ref = obj.get("client_msg_id") if isinstance(obj.get("client_msg_id"), str) else None
            msg = error_frame(exc, ref=ref)
            if self.conn is not None:
                self.conn.send(msg)
            else:
                asyncio.ensure_future(self._send_now(msg))
            return None

    def _spend_invalid(self) -> None:
        now = time.monotonic()
        self._budget = min(INVALID_BURST, self._budget + (now - self._budget_at) * INVALID_REFILL_PER_S)
        self._budget_at = now
        self._budget -= 1
        if self._budget < 0:
            raise Close(1008, "too many invalid frames")

    def _dispatch(self, frame) -> None:
        conn = self.conn
        if isinstance(frame, Ping):
            conn.send('{"type":"pong"}')
        elif isinstance(frame, Send):
            if self.inflight >= MAX_INFLIGHT_SENDS:
                conn.send(error_frame(RateLimited("too many sends in flight", retry_after_ms=100),
                                      ref=frame.client_msg_id))
                return
            self._spawn(self._send(frame))
        elif isinstance(frame, Sync):
            self._spawn(self._sync(frame))
        elif isinstance(frame, Hello):
            conn.send(error_frame(Invalid("type: already authenticated on this socket")))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, f: Send) -> None:
        self.inflight += 1
        try:
            ev = await self.svc.send(self.conn.user_id, f.conversation_id, f.client_msg_id, f.body,
                                     list(f.attachments), f.reply_to)
            self.conn.send(dumps({"type": "ack", "client_msg_id": f.client_msg_id,
                                  "conversation_id": f.conversation_id, "seq": ev["seq"],
                                  "created_at": iso(ev["created_at"])}))
        except ChatError as exc:
            self.conn.send(error_frame(exc, ref=f.client_msg_id))
        except Exception:
            log.exception("send failed")
            self.conn.send(error_frame(Internal("internal error"), ref=f.client_msg_id))
        finally:
            self.inflight -= 1

    async def _sync(self, f: Sync) -> None:
        try:
            await self.svc.member_conversation(self.conn.user_id, f.conversation_id)
        except ChatError as exc:
            self.conn.send(error_frame(exc, ref=f.conversation_id))
            return
        self.conn.sync(f.conversation_id, f.after_seq)

    # ---- CLOSED -----------------------------------------------------------------------
    async def _send_now(self, text: str) -> None:
        try:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.send_text(text)
        except Exception:
            pass

    async def _close(self, code: int, reason: str) -> None:
        try:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.close(code=code, reason=reason)
        except Exception:
            pass

