"""The WebSocket endpoint ``/v1/ws`` (PROTOCOL.md, "WebSocket").

States: AWAIT_HELLO → LIVE → CLOSED. The first frame must be ``hello`` within
hello_timeout_s (or the handshake carried ``Authorization: Bearer``). In LIVE,
a reader parses frames and a writer (gateway/conn.py) sends everything the
client gets, in order. Close codes: 1003 binary, 1007 not JSON, 1008 policy
(auth, repeated invalid frames), 1009 frame too large, 1013 too slow a consumer.

A socket is authorized until its access token's ``exp``; then it is closed with 1008. An ``auth``
frame carrying a fresh token of the same user, sent before that, moves the deadline to the new
token's ``exp`` (answer ``authed {expires_in}``); a bad token, or one of another user, is answered
with an ``unauthorized`` error and close 1008.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.events import dumps
from raychat import logs
from raychat.clock import iso
from raychat.errors import ChatError, Internal, Invalid, NotFound, RateLimited, Unauthorized

from . import edge
from .chat_service import ahead_of_the_log
from .conn import Conn, SlowConsumer
from .frames import Auth, Delete, Edit, Hello, NotJson, Ping, React, Read, Send, Sync, Typing, load, parse_frame
from .metrics import ACK_LATENCY
from .request_ids import RAW_SEND
from .tokens import Access

log = logging.getLogger(__name__)

MAX_INFLIGHT_SENDS = 256      # per socket; past this a send is answered rate_limited
INVALID_BURST = 10            # invalid frames tolerated in a burst before 1008
INVALID_REFILL_PER_S = 1.0


class Close(Exception):
    def __init__(self, code: int, reason: str, frame: str | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.frame = frame          # sent just before the close, e.g. the error that explains it


def error_frame(exc: ChatError, ref: str | None = None) -> str:
    body = exc.to_dict()
    if ref is not None:
        body["ref"] = ref
    return dumps({"type": "error", **body})


def _echoable(ref) -> str | None:
    """A refused frame's ``client_msg_id``, if it can go back in the error's ``ref``: a string of
    at most 128 characters that UTF-8 can carry (a lone surrogate cannot be sent: close 1011)."""
    if not isinstance(ref, str) or len(ref) > 128:
        return None
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return ref


def frame_writer(ws: WebSocket):
    """What writes a text frame to this socket: the ASGI send outside our middleware when the
    request context left it in the scope, else Starlette's ``send_text``. Each layer skipped is
    paid once per frame per member; a group of 1,000 pays it 1,000 times per message. A socket
    gone under the write raises WebSocketDisconnect(1006), as Starlette's would."""
    send = ws.scope.get(RAW_SEND)
    if send is None:
        return ws.send_text

    async def send_text(text: str) -> None:
        try:
            await send({"type": "websocket.send", "text": text})
        except OSError:
            ws.application_state = WebSocketState.DISCONNECTED
            raise WebSocketDisconnect(code=1006) from None

    return send_text


def _drop(task: asyncio.Future) -> None:
    """Stop a receive no one will read. One that already ended (the client's close, seen in the
    same turn as the writer's failure) has its outcome taken, or asyncio would log it as an
    error with a traceback for every socket closed that way."""
    if task.done():
        if not task.cancelled():
            task.exception()
    else:
        task.cancel()


class Session:
    def __init__(self, ws: WebSocket, ctx: Any):
        self.ws = ws
        self.ctx = ctx
        self.settings = ctx.settings
        self.accounts = ctx.accounts
        self.svc = ctx.chat
        self.hub = ctx.hub
        self.clock = ctx.accounts.clock
        self.expires_at = 0.0       # the socket's authorization ends at this exp (epoch seconds)
        self.conn: Conn | None = None
        self.inflight = 0
        self.tasks: set[asyncio.Task] = set()
        self._budget = float(INVALID_BURST)
        self._budget_at = time.monotonic()
        self.slot = None            # this socket's place among its user's ws_connections_per_user
        # Sends reach ChatService.send in frame order (it keeps that order from there on). The
        # rate limiter's round trips end in any order, so they run one at a time, first come
        # first served; svc.send is entered before the next send's check resumes.
        self._limit_order = asyncio.Lock()

    async def run(self) -> None:
        await self.ws.accept()
        writer: asyncio.Task | None = None
        try:
            access, hello = await self._authenticate()
            user_id, self.expires_at = access.user_id, access.expires_at
            self.slot = await self._admit(user_id)
            read = functools.partial(self.svc.read_visible, user_id)
            self.conn = Conn(self.hub.new_socket_id(), user_id, frame_writer(self.ws), read,
                             self.settings.socket_queue_max, transport="ws", clock=self.clock)
            logs.bind(user_id=user_id, socket_id=self.conn.socket_id)    # every later line of this socket
            self.hub.add(self.conn)
            self.conn.send(dumps({"type": "welcome", "user_id": user_id, "session_id": self.conn.socket_id}))
            if hello is not None:
                await self._resume(hello.since)
            await self.hub.connect(self.conn)
            # Only now does anything leave: welcome promises live delivery, and from here on the
            # user's session knows this socket, so no event can fall between the two.
            writer = asyncio.get_running_loop().create_task(self.conn.run_writer())
            await self._read_loop(writer)
        except Close as c:
            if c.frame is not None:
                await self._send_now(c.frame)
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
            if self.slot is not None:
                await self.ctx.limits.close_socket(self.slot)
            if self.conn is not None:
                self.conn.close()
                self.hub.remove(self.conn)
                await self.hub.disconnect(self.conn)
            if writer is not None:
                writer.cancel()

    # ---- AWAIT_HELLO ------------------------------------------------------------------
    async def _authenticate(self) -> tuple[Access, Hello | None]:
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
        try:
            obj = load(text)
        except NotJson:
            raise Close(1007, "frames must be JSON") from None
        if not isinstance(obj, dict) or obj.get("type") != "hello":
            await self._send_now(error_frame(Unauthorized("the first frame must be hello")))
            raise Close(1008, "the first frame must be hello")
        try:
            frame = parse_frame(obj)
        except ChatError as exc:
            # A hello with a bad field (since: {cid: -1}, say) is invalid, naming the field, as
            # any frame would be; without a hello the socket cannot go on.
            await self._send_now(error_frame(exc))
            raise Close(1008, f"invalid hello: {exc.message}"[:120]) from None
        return self._verify(frame.token), frame

    def _verify(self, token: str) -> Access:
        try:
            return self.accounts.access(token)
        except Unauthorized as exc:
            raise Close(1008, f"unauthorized: {exc.message}"[:120]) from None

    async def _admit(self, user_id: str):
        """Over the user's connection limit the socket gets an error frame (rate_limited,
        retry_after_ms) and close 1008: the limit is per user, and the user is known only now."""
        try:
            return await self.ctx.limits.open_socket(user_id)
        except RateLimited as exc:
            await self._send_now(error_frame(exc))
            raise Close(1008, "too many connections for this user") from None

    async def _resume(self, since: dict[str, int]) -> None:
        for cid, seq in since.items():
            try:
                start = await self.svc.resume_point(self.conn.user_id, cid, seq)
            except NotFound as exc:
                self.conn.send(error_frame(exc, ref=cid))
                continue
            if start < seq:
                self.conn.send(error_frame(ahead_of_the_log(seq, start), ref=cid))
            self.conn.delivered[cid] = max(self.conn.delivered.get(cid, 0), start)
            self.conn.sync(cid, start)

    # ---- LIVE -------------------------------------------------------------------------
    async def _read_loop(self, writer: asyncio.Task) -> None:
        expiry = asyncio.get_running_loop().create_task(self._expire())
        receive = None
        try:
            while True:
                receive = asyncio.ensure_future(self._receive_text())
                done, _ = await asyncio.wait({receive, writer, expiry}, return_when=asyncio.FIRST_COMPLETED)
                if expiry in done:
                    expiry.result()      # raises Close(1008)
                if writer in done:
                    writer.result()      # raises SlowConsumer or the send error
                    return
                frame = self._parse(receive.result())
                if frame is not None:
                    self._dispatch(frame)
        finally:
            expiry.cancel()
            # Also when this loop is cancelled (Serve ends the request once the client is gone):
            # the receive then ends with the client's close, and no one would read it.
            if receive is not None:
                _drop(receive)

    async def _expire(self) -> None:
        """Close the socket when its token expires; an ``auth`` frame moves ``expires_at`` meanwhile."""
        while (left := self.expires_at - self.clock.now()) > 0:
            await asyncio.sleep(left)
        log.info("closing websocket of user %s: access token expired", self.conn.user_id)
        raise Close(1008, "unauthorized: access token expired",
                    error_frame(Unauthorized("access token expired: reconnect with a new one")))

    def _reauth(self, f: Auth) -> None:
        try:
            access = self.accounts.access(f.token)
        except Unauthorized as exc:
            raise Close(1008, f"unauthorized: {exc.message}"[:120], error_frame(exc)) from None
        if access.user_id != self.conn.user_id:
            log.warning("closing websocket of user %s: auth frame with another user's token", self.conn.user_id)
            exc = Unauthorized("token is for another user")
            raise Close(1008, f"unauthorized: {exc.message}", error_frame(exc))
        # A token that expires sooner than the one in force takes nothing away.
        self.expires_at = max(self.expires_at, access.expires_at)
        self.conn.send(dumps({"type": "authed", "expires_in": max(0, int(self.expires_at - self.clock.now()))}))

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
            raise Close(1007, "frames must be JSON") from None
        try:
            return parse_frame(obj)
        except ChatError as exc:
            self._spend_invalid()
            msg = error_frame(exc, ref=_echoable(obj.get("client_msg_id")) if isinstance(obj, dict) else None)
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
            self._spawn(self._send(frame, self.clock.monotonic()), frame.conversation_id)
        elif isinstance(frame, Sync):
            self._spawn(self._sync(frame), frame.conversation_id)
        elif isinstance(frame, (Edit, Delete, React)):
            self._spawn(self._change(frame), frame.conversation_id)
        elif isinstance(frame, (Read, Typing)):
            self._spawn(self._quiet(frame), frame.conversation_id)
        elif isinstance(frame, Auth):
            self._reauth(frame)
        elif isinstance(frame, Hello):
            conn.send(error_frame(Invalid("type: already authenticated on this socket")))

    def _spawn(self, coro, conversation_id: str) -> None:
        # The frame's task logs with its conversation; the socket's other tasks do not.
        context = contextvars.copy_context()
        context.run(logs.scoped, conversation_id=conversation_id)
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, f: Send, received_at: float) -> None:
        """``received_at``: the clock's monotonic time when the frame was read (ack latency)."""
        self.inflight += 1
        try:
            async with self._limit_order:
                await self.ctx.limits.message(self.conn.user_id, ref=f.client_msg_id)
            ev = await self.svc.send(self.conn.user_id, f.conversation_id, f.client_msg_id, f.body,
                                     list(f.attachments), f.reply_to)
            self.conn.send(dumps({"type": "ack", "client_msg_id": f.client_msg_id,
                                  "conversation_id": f.conversation_id, "seq": ev["seq"],
                                  "created_at": iso(ev["created_at"])}))
            ACK_LATENCY.labels("ws").observe(self.clock.monotonic() - received_at)
        except ChatError as exc:
            self.conn.send(error_frame(exc, ref=f.client_msg_id))
        except Exception:
            log.exception("send failed")
            self.conn.send(error_frame(Internal("internal error"), ref=f.client_msg_id))
        finally:
            self.inflight -= 1

    async def _change(self, f: Edit | Delete | React) -> None:
        """edit / delete / react: answered with ack (seq null when nothing changed) or error, by ref."""
        uid, svc = self.conn.user_id, self.svc
        try:
            if isinstance(f, Edit):
                ev = await svc.edit(uid, f.conversation_id, f.seq, f.body)
            elif isinstance(f, Delete):
                ev = await svc.delete(uid, f.conversation_id, f.seq)
            else:
                ev = await svc.react(uid, f.conversation_id, f.seq, f.emoji, f.on)
            ack = {"type": "ack", "ref": f.ref, "conversation_id": f.conversation_id,
                   "seq": ev["seq"] if ev else None, "created_at": iso(ev["created_at"]) if ev else None}
            self.conn.send(dumps(ack))
        except ChatError as exc:
            self.conn.send(error_frame(exc, ref=f.ref))
        except Exception:
            log.exception("%s failed", f.type)
            self.conn.send(error_frame(Internal("internal error"), ref=f.ref))

    async def _quiet(self, f: Read | Typing) -> None:
        """read / typing: no answer unless they fail."""
        try:
            if isinstance(f, Read):
                await self.svc.read(self.conn.user_id, f.conversation_id, f.seq)
            else:
                if f.on:    # stopping is never limited: it only ever quiets things down
                    await self.ctx.limits.typing(self.conn.user_id)
                await self.svc.typing(self.conn.user_id, f.conversation_id, f.on)
        except ChatError as exc:
            self.conn.send(error_frame(exc, ref=f.conversation_id))
        except Exception:
            log.exception("%s failed", f.type)
            self.conn.send(error_frame(Internal("internal error"), ref=f.conversation_id))

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
        who = (f"user {self.conn.user_id}" if self.conn is not None else
               f"ip {edge.client_ip(self.ws.scope, self.settings.trusted_proxy_networks())}")
        log.info("closing websocket of %s: %d %s", who, code, reason)
        try:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.close(code=code, reason=reason)
        except Exception:
            pass

