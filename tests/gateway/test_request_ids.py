"""OneRequestId: whatever the layers within add, a request has one sane x-request-id, its log
lines carry it and its answer carries exactly that one. Pure ASGI: a tiny app inside raychat's
RequestContext, inside a stand-in for Serve's RequestIdMiddleware (which echoes the request's
header as it came)."""

from __future__ import annotations

import uuid

import pytest

from gateway.request_ids import HEADER, OneRequestId, RequestContext
from raychat import logs


def echoes_request_id(app):
    """Like Serve's RequestIdMiddleware: appends the request's x-request-id, unchecked, to the answer."""
    async def middleware(scope, receive, send):
        sent = dict(scope["headers"]).get(HEADER, b"made-by-serve")

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"X-Request-ID", sent)]}
            await send(message)

        await app(scope, receive, send_with_id)
    return middleware


async def answer(scope, receive, send):
    """Tells, in its answer, the request ids it was given and the one its log lines carry."""
    headers = [(b"x-seen", b",".join(v for n, v in scope["headers"] if n == HEADER)),
               (b"x-logged", logs.current()["request_id"].encode())]
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept", "headers": headers})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def call(headers, kind="http"):
    """The request ids the app saw and those its answer carried; fails unless its log lines carry
    the one it saw."""
    app = OneRequestId(echoes_request_id(RequestContext(answer)))
    messages = []

    async def receive():
        return {"type": "websocket.connect"} if kind == "websocket" else {"type": "http.request", "body": b""}

    async def send(message):
        messages.append(message)

    scope = {"type": kind, "method": "GET", "path": "/", "headers": [(n.lower(), v) for n, v in headers]}
    await app(scope, receive, send)
    start = messages[0]
    seen = dict(start["headers"])[b"x-seen"].split(b",")
    assert seen == [dict(start["headers"])[b"x-logged"]]
    return seen, [v for n, v in start["headers"] if n.lower() == HEADER]


async def test_a_sane_id_reaches_the_app_and_comes_back_once():
    assert await call([(b"X-Request-ID", b"trace-7f3a:1.b_c")]) == ([b"trace-7f3a:1.b_c"], [b"trace-7f3a:1.b_c"])


@pytest.mark.parametrize("sent", [b"a b", b"x" * 129, "\u00e9".encode(), b"", b"bad id; forged"])
async def test_an_unsafe_id_is_replaced_before_any_layer_sees_it(sent):
    seen, answered = await call([(b"X-Request-ID", sent)])
    assert seen == answered and len(answered) == 1
    assert answered[0] != sent and uuid.UUID(answered[0].decode())


async def test_a_missing_id_is_made_as_a_uuid_and_comes_back_once():
    seen, answered = await call([])
    assert seen == answered and len(answered) == 1
    assert len(answered[0]) == 36 and uuid.UUID(answered[0].decode())


async def test_several_ids_become_the_first_sane_one():
    assert await call([(b"x-request-id", b"a b"), (b"x-request-id", b"second"),
                       (b"x-request-id", b"third")]) == ([b"second"], [b"second"])


async def test_a_websocket_handshake_carries_the_id_once():
    assert await call([(b"x-request-id", b"ws-1")], kind="websocket") == ([b"ws-1"], [b"ws-1"])


async def test_other_scopes_pass_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)

    scope = {"type": "lifespan"}
    await OneRequestId(app)(scope, None, None)
    assert seen == [scope]
