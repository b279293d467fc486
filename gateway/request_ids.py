"""Request ids and the access log (ASGI middleware: RequestContext is the app's outermost).

Every HTTP request and WebSocket gets a request id: the caller's ``X-Request-ID`` if it is a
sane one (1-128 characters of ``A-Z a-z 0-9 . _ : -``: it is printed in logs, so nothing that
could forge a line), else a new one. It opens the log context (raychat/logs.py) that the rest of
the request adds to (user, conversation, socket), comes back in the ``X-Request-ID`` response
header (on the WebSocket handshake and on a 500 too), and ends with one access line per HTTP
request: method, path (never the query string: it may carry a token), status and duration.

A server-made id is a random UUID in its 36-character form, the form Serve and HAProxy make
too, so an id looks the same whichever layer made it.

Under Ray Serve one more layer is outside all of ours: Serve's RequestIdMiddleware appends the
request's ``x-request-id`` to every response as it arrived, unsafe or not, making one when it is
missing. ``OneRequestId`` goes outside that (gateway/replica_server.py installs it) so every
layer sees the same sane id and the answer carries it once.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from raychat import logs
from raychat.errors import Internal

from .http_errors import error_response

log = logging.getLogger("gateway.access")
bugs = logging.getLogger("gateway.http_errors")      # where the error handlers log, too

HEADER = b"x-request-id"
RAW_SEND = "raychat.raw_send"           # the scope key of the ASGI send outside our middleware
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SANE.fullmatch(value):
            return value.decode()
    return str(uuid.uuid4())


class OneRequestId:
    """Outermost: gives the request exactly one sane ``x-request-id`` on the way in (the caller's,
    else a new one, in place of every other), and its answer exactly that one on the way out
    (HTTP response or WebSocket handshake), whatever the layers within appended."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        rid = (HEADER, request_id(scope).encode())
        scope = {**scope, "headers": [*(h for h in scope["headers"] if h[0] != HEADER), rid]}

        async def send_one_id(message):
            if message["type"] in ("http.response.start", "websocket.accept"):
                others = (h for h in message.get("headers", ()) if h[0].lower() != HEADER)
                message = {**message, "headers": [*others, rid]}
            await send(message)

        await self.app(scope, receive, send_one_id)


class RequestContext:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        rid = request_id(scope)
        token = logs.new_context(request_id=rid)
        status = 500
        started = time.perf_counter()
        started_response = False

        async def send_with_id(message):
            nonlocal status, started_response
            if message["type"] in ("http.response.start", "websocket.accept"):
                status, started_response = message.get("status", 101), True
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, rid.encode())]}
            await send(message)

        if scope["type"] == "websocket":
            # After the handshake a socket's frames need none of the layers between here and
            # the route (this wrapper, Starlette's exception wrapper and WebSocket state checks):
            # gateway/ws.py writes them with the send that reached us.
            scope[RAW_SEND] = send
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if scope["type"] != "http" or started_response:
                raise
            # A bug. Answered here rather than by Starlette's outermost handler (which runs
            # outside every middleware), so the 500 carries X-Request-ID too: the id a user
            # quotes to find this very line.
            bugs.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await error_response(Internal("internal error"))(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status,
                         (time.perf_counter() - started) * 1000)
            logs.reset(token)
