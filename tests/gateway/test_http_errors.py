"""Framework-level failures leave in the documented shape, on a tiny in-process app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gateway import http_errors
from gateway.routes.devices import DeviceBody


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


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_an_unsupported_media_type(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/things", content=b'{"name": "x"}', headers=headers)
    assert r.status_code == 415
    assert r.json() == {"code": "unsupported_media_type",
                        "message": f"content-type: must be application/json, not {content_type or 'missing'}"}


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_that_is_not_an_object_is_still_invalid(client, content_type):
    assert client.post("/things", content=b'{"name": "x"}', headers={"content-type": content_type}).status_code == 200
    r = client.post("/things", content=b"[1, 2]", headers={"content-type": content_type})
    assert r.status_code == 422 and r.json()["code"] == "invalid"


@pytest.fixture
def devices():
    app = FastAPI()
    http_errors.install(app)

    @app.post("/devices")
    async def register(body: DeviceBody):
        return {}

    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("body,message", [
    ({"platform": "sms", "token": "x" * 20}, "platform: must be one of 'fcm', 'apns', 'webhook'"),
    ({"token": "x" * 20}, "platform: Field required"),
    ({"platform": "webhook", "token": "ftp://example.com/hook"}, "token: String should match pattern '^https?://'"),
    ({"platform": "fcm", "token": "short"}, "token: String should match pattern"),
])
def test_a_body_with_one_shape_per_platform_names_the_field_not_the_shape(devices, body, message):
    r = devices.post("/devices", json=body)
    assert r.status_code == 422 and r.json()["message"].startswith(message), r.json()
