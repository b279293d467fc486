"""Framework-level failures leave in the documented shape, on a tiny in-process app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gateway import http_errors


class Thing(BaseModel):
    name: str


@pytest.fixture
def client():
    app = FastAPI()
    http_errors.install(app)

    @app.get("/things")
    async def things():
        return []

    @app.post("/things")
    async def make(thing: Thing):
        return thing

    with TestClient(app) as c:
        yield c


def test_a_method_the_route_lacks_is_405_with_allow(client):
    """RFC 9110, 15.5.6: a 405 lists the methods the resource has."""
    r = client.request("TRACE", "/things")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}
    assert r.json() == {"code": "invalid", "message": "Method Not Allowed"}


def test_a_body_that_is_not_utf8_is_invalid_json_422(client):
    r = client.post("/things", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"code": "invalid", "message": "body: not valid JSON"}


def test_a_body_that_is_not_json_gets_the_same_answer(client):
    r = client.post("/things", content=b'{"name": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"code": "invalid", "message": "body: not valid JSON"}
