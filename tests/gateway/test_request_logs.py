"""Each HTTP request's log lines are JSON carrying its request id and, once authenticated, its
user; never its token or body. The id comes back as X-Request-ID.

In-process: the gateway's own middleware (RequestContext), error handlers and bearer dependency
with a real TokenIssuer, on a tiny app; no Ray, no stores.
"""

from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from gateway import context as ctx_module
from gateway import http_errors
from gateway.account_service import AccountService
from gateway.context import Context
from gateway.passwords import PasswordHasher
from gateway.request_ids import RequestContext
from gateway.routes.deps import User, log_context
from gateway.tokens import TokenIssuer
from raychat import logs
from raychat.clock import SystemClock
from raychat.config import Settings

SECRET = "request-logs-secret-" + "x" * 40
BODY = "the launch codes are 0000"


@pytest.fixture
def token_and_client():
    settings = Settings(jwt_secret=SECRET)
    clock = SystemClock()
    tokens = TokenIssuer(SECRET, settings.jwt_issuer, settings.jwt_audience, 900, clock)
    accounts = AccountService(settings, SimpleNamespace(refresh_tokens=None), None, tokens, PasswordHasher(), clock)
    ctx_module.set_context(Context(settings, None, None, None, None, accounts, None))

    app = FastAPI()
    http_errors.install(app)
    router = APIRouter()

    @router.post("/v1/conversations/{cid}/echo")
    async def echo(cid: str, uid: User):
        logging.getLogger("gateway.test").info("echo handled")
        return {"ok": True}

    @router.get("/v1/conversations/{cid}/bug")
    async def bug(cid: str, uid: User):
        raise RuntimeError(f"bug while holding {dict(body=BODY, seq=3)}")

    app.include_router(router, dependencies=[Depends(log_context)])     # as routes.include_all does
    app.add_middleware(RequestContext)
    token, _ = tokens.issue("u-alice")
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    yield token, httpx.AsyncClient(transport=transport, base_url="http://gw")
    ctx_module.set_context(None)


@pytest.fixture
def output():
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("INFO", "json", stream=buf)
    yield buf
    root.removeHandler(handler)
    root.setLevel(level)


def json_lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


async def test_a_request_logs_its_id_and_user_and_never_its_token_or_body(token_and_client, output):
    token, client = token_and_client
    async with client:
        r = await client.post(f"/v1/conversations/c-42/echo?access_token={token}", json={"body": BODY},
                              headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-7f3a"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-7f3a"
    lines = json_lines(output)
    handled = next(line for line in lines if line["message"] == "echo handled")
    access = next(line for line in lines if line["logger"] == "gateway.access")
    for line in (handled, access):
        assert line["request_id"] == "trace-7f3a" and line["user_id"] == "u-alice", line
        assert line["conversation_id"] == "c-42", line
    assert access["message"].startswith("POST /v1/conversations/c-42/echo 200 ")
    text = output.getvalue()
    assert token not in text and BODY not in text


async def test_a_refused_request_is_logged_with_its_generated_id(token_and_client, output):
    _, client = token_and_client
    async with client:
        r = await client.post("/v1/conversations/c-1/echo", headers={"Authorization": "Bearer not-a-token",
                                                                     "X-Request-ID": "bad id; forged"})
    assert r.status_code == 401
    rid = r.headers["x-request-id"]
    assert len(rid) == 36 and "forged" not in rid        # an id that could forge a line is replaced: a UUID
    lines = [line for line in json_lines(output) if line["logger"].startswith("gateway.")]   # not httpx's own
    assert [line["logger"] for line in lines] == ["gateway.http_errors", "gateway.access"]
    assert all(line["request_id"] == rid and "user_id" not in line for line in lines)
    assert "not-a-token" not in output.getvalue()


async def test_a_bug_is_a_500_with_its_request_id_and_a_logged_traceback(token_and_client, output):
    token, client = token_and_client
    async with client:
        r = await client.get("/v1/conversations/c-9/bug", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500 and r.json() == {"code": "internal", "message": "internal error"}
    rid = r.headers["x-request-id"]
    (bug,) = [line for line in json_lines(output) if line["logger"] == "gateway.http_errors"]
    assert bug["level"] == "ERROR" and "RuntimeError" in bug["exc_info"]
    assert (bug["request_id"], bug["user_id"], bug["conversation_id"]) == (rid, "u-alice", "c-9")
    assert BODY not in output.getvalue()
