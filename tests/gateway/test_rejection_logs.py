"""Every refused HTTP request leaves one log line naming the client IP, never a secret.

A tiny app in-process with the gateway's error handlers and body limit; no Ray, no stores.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from gateway import http_errors
from raychat.errors import RateLimited, Unauthorized

PEER = "203.0.113.7"
SECRET = "hunter2-correct-horse"


@pytest.fixture
async def client():
    app = FastAPI()
    http_errors.install(app)

    @app.post("/login")
    async def login():
        raise Unauthorized("wrong username or password")

    @app.post("/limited")
    async def limited():
        raise RateLimited("slow down", retry_after_ms=1500)

    app.add_middleware(http_errors.BodyLimit, max_bytes=1024)
    transport = httpx.ASGITransport(app=app, client=(PEER, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


def lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.http_errors"]


async def test_an_auth_failure_is_logged_with_the_ip_and_without_credentials(client, caplog):
    with caplog.at_level(logging.INFO, logger="gateway.http_errors"):
        r = await client.post(f"/login?token={SECRET}", json={"password": SECRET},
                              headers={"authorization": f"Bearer {SECRET}"})
    assert r.status_code == 401
    (record,) = lines(caplog)
    text = record.getMessage()
    assert PEER in text and "401" in text and "/login" in text and SECRET not in text


async def test_a_rate_limit_is_logged_as_a_warning(client, caplog):
    with caplog.at_level(logging.INFO, logger="gateway.http_errors"):
        r = await client.post("/limited")
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    (record,) = lines(caplog)
    assert record.levelno == logging.WARNING and PEER in record.getMessage()


async def test_a_body_over_the_limit_is_logged_without_the_body(client, caplog):
    with caplog.at_level(logging.INFO, logger="gateway.http_errors"):
        r = await client.post("/login", content=SECRET.encode() * 100)
    assert r.status_code == 413
    (record,) = lines(caplog)
    assert PEER in record.getMessage() and "413" in record.getMessage() and SECRET not in record.getMessage()
