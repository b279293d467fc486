"""What the schemathesis run found, each pinned as its own test through Serve. Every one of these
was a 500, a close 1011, a bare-text 400 from the proxy or a wrong header before it was fixed."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from actors.events import MAX_SEQ
from tests.chat_client import create_group, register

pytestmark = pytest.mark.e2e

TOO_BIG = MAX_SEQ + 1          # one past what the store's 64-bit integers hold


@pytest.fixture
async def group(http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth, json={"client_msg_id": "m1", "body": "hi"})
    assert r.status_code == 201, r.text
    return a, cid


def assert_invalid(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid" and r.json()["message"].startswith(field), r.json()


@pytest.mark.parametrize("method, path, field", [
    ("GET", "/v1/conversations/{cid}/events?after_seq={big}", "after_seq"),
    ("GET", "/v1/conversations/{cid}/messages?before_seq={big}", "before_seq"),
    ("PATCH", "/v1/conversations/{cid}/messages/{big}", "seq"),
    ("DELETE", "/v1/conversations/{cid}/messages/{big}", "seq"),
    ("POST", "/v1/conversations/{cid}/messages/{big}/reactions", "seq"),
])
async def test_a_seq_past_64_bits_in_a_url_is_invalid(http, group, method, path, field):
    a, cid = group
    body = {"PATCH": {"body": "x"}, "POST": {"emoji": "👍"}}.get(method)
    r = await http.request(method, path.format(cid=cid, big=TOO_BIG), headers=a.auth, json=body)
    assert_invalid(r, field)


@pytest.mark.parametrize("path, body, field", [
    ("/v1/conversations/{cid}/read", {"seq": TOO_BIG}, "seq"),
    ("/v1/conversations/{cid}/messages", {"client_msg_id": "k2", "body": "x", "reply_to": TOO_BIG}, "reply_to"),
])
async def test_a_seq_past_64_bits_in_a_body_is_invalid(http, group, path, body, field):
    a, cid = group
    assert_invalid(await http.post(path.format(cid=cid), headers=a.auth, json=body), field)


@pytest.mark.parametrize("value", [False, True, 1.0, "1"])
async def test_a_read_cursor_must_be_a_json_integer(http, group, value):
    """false used to be taken as seq 0."""
    a, cid = group
    assert_invalid(await http.post(f"/v1/conversations/{cid}/read", headers=a.auth, json={"seq": value}), "seq")


async def test_a_reply_to_must_be_a_json_integer(http, group):
    a, cid = group
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                        json={"client_msg_id": "k3", "body": "x", "reply_to": True})
    assert_invalid(r, "reply_to")


@pytest.mark.parametrize("frame", [
    {"type": "sync", "after_seq": TOO_BIG},
    {"type": "edit", "seq": TOO_BIG, "body": "x"},
    {"type": "read", "seq": TOO_BIG},
    {"type": "send", "client_msg_id": "k4", "body": "x", "reply_to": TOO_BIG},
])
async def test_a_seq_past_64_bits_in_a_frame_is_an_invalid_frame_not_a_1011(raychat, group, frame):
    a, cid = group
    async with websockets.connect(raychat.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps({"type": "hello", "token": a.token}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
        await ws.send(json.dumps({**frame, "conversation_id": cid}))
        while (answer := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "error":
            pass
        assert answer["code"] == "invalid", answer
        await ws.send('{"type": "ping"}')
        while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "pong":
            pass


@pytest.mark.parametrize("params, headers", [
    ({"since": f"c_x:{TOO_BIG}"}, {}),
    ({}, {"Last-Event-ID": b"c_x:\xb2"}),          # latin-1 "²": isdigit(), but int("²") raises
    ({"since": "c_x:1" + ",c_x:1" * 5000}, {}),    # over 20,000 characters: the URL would outgrow the proxy
])
async def test_a_bad_stream_resume_point_is_invalid(http, group, params, headers):
    a, _ = group
    r = await http.get("/v1/stream", params=params, headers={**a.auth, **headers})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid"


@pytest.mark.parametrize("user_ids", ["u_\u00e9", "u_x," * 6000])
async def test_presence_ids_are_short_ascii(http, group, user_ids):
    a, _ = group
    assert_invalid(await http.get("/v1/presence", params={"user_ids": user_ids}, headers=a.auth), "user_ids")


async def test_a_method_the_path_lacks_is_405_listing_every_method_it_has(http, group):
    a, _ = group
    r = await http.put("/v1/users/me", headers=a.auth, json={})
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "PATCH"}
    assert r.json() == {"code": "invalid", "message": "Method Not Allowed"}


async def test_a_body_that_is_not_utf8_is_invalid_json(http, group):
    a, cid = group
    r = await http.post(f"/v1/conversations/{cid}/read", headers={**a.auth, "content-type": "application/json"},
                        content=b'{"seq": "\xff"}')
    assert r.status_code == 422 and r.json() == {"code": "invalid", "message": "body: not valid JSON"}
