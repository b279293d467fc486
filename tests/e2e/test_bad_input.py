"""Bad input on every route and frame type: the documented error or close code, never a 500,
and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from raychat.clock import FakeClock
from gateway.tokens import TokenIssuer
from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e


async def _raw(raychat, first: str | bytes | None = None, headers=None):
    ws = await websockets.connect(raychat.ws_url + "/v1/ws", max_size=2**24, additional_headers=headers)
    if first is not None:
        await ws.send(first)
    return ws


async def _close_code(ws, timeout=10) -> int:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else 1006


async def _next_of(ws, kind: str, timeout=10) -> dict:
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if f["type"] == kind:
            return f


@pytest.fixture
async def live(raychat, http):
    """A member with an open, authenticated socket and a conversation."""
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    ws = await _raw(raychat, json.dumps({"type": "hello", "token": a.token}))
    assert (await _next_of(ws, "welcome"))["user_id"] == a.user_id
    yield a, b, cid, ws
    await ws.close()


# ---- WebSocket: before hello ---------------------------------------------------------------
async def test_no_hello_in_time_closes_1008(raychat):
    ws = await _raw(raychat)
    assert await _close_code(ws, timeout=raychat.settings.hello_timeout_s + 5) == 1008


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
async def test_bad_token_closes_1008(raychat, token):
    ws = await _raw(raychat, json.dumps({"type": "hello", "token": token}))
    assert await _close_code(ws) == 1008


async def test_forged_token_closes_1008(raychat, http):
    a = await register(http)
    forged = TokenIssuer("another-secret-" + "y" * 40, "raychat", "raychat", 900, FakeClock(2e9)).issue(a.user_id)[0]
    ws = await _raw(raychat, json.dumps({"type": "hello", "token": forged}))
    assert await _close_code(ws) == 1008


async def test_expired_token_closes_1008(raychat, http):
    a = await register(http)
    expired = TokenIssuer(raychat.settings.jwt_secret, "raychat", "raychat", 60, FakeClock(1_600_000_000)).issue(a.user_id)[0]
    ws = await _raw(raychat, json.dumps({"type": "hello", "token": expired}))
    assert await _close_code(ws) == 1008


async def test_first_frame_not_hello_closes_1008(raychat):
    ws = await _raw(raychat, json.dumps({"type": "send", "conversation_id": "c", "client_msg_id": "k", "body": "x"}))
    assert await _close_code(ws) == 1008


async def test_bearer_header_on_handshake_replaces_hello(raychat, http):
    a = await register(http)
    ws = await _raw(raychat, headers={"Authorization": f"Bearer {a.token}"})
    assert (await _next_of(ws, "welcome"))["user_id"] == a.user_id
    await ws.send('{"type":"ping"}')
    await _next_of(ws, "pong")
    await ws.close()


# ---- WebSocket: live -------------------------------------------------------------------------
async def test_malformed_json_closes_1007(live):
    *_, ws = live
    await ws.send("{not json")
    assert await _close_code(ws) == 1007


async def test_text_frame_that_is_not_utf8_closes_1007(live):
    *_, ws = live
    await ws.send(b'{"type":"ping","x":"\xff\xfe"}', text=True)    # a text frame, bytes not UTF-8
    assert await _close_code(ws) == 1007


async def test_binary_frame_closes_1003(live):
    *_, ws = live
    await ws.send(b"\x00\x01")
    assert await _close_code(ws) == 1003


async def test_frame_over_the_size_limit_closes_1009(raychat, live):
    *_, cid, ws = live
    big = json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": "k",
                      "body": "x" * (raychat.settings.max_frame_bytes + 10)})
    await ws.send(big)
    assert await _close_code(ws) == 1009


async def test_unknown_frame_type_is_invalid_and_the_socket_stays(live):
    *_, ws = live
    await ws.send('{"type":"launch_rockets"}')
    err = await _next_of(ws, "error")
    assert err["code"] == "invalid" and "type" in err["message"]
    await ws.send('{"type":"ping"}')
    await _next_of(ws, "pong")


@pytest.mark.parametrize("frame,field", [
    ({"type": "send", "client_msg_id": "k", "body": "x"}, "conversation_id"),
    ({"type": "send", "conversation_id": "c", "body": "x"}, "client_msg_id"),
    ({"type": "send", "conversation_id": "c", "client_msg_id": "k"}, "body"),
    ({"type": "send", "conversation_id": "c", "client_msg_id": "k", "body": 5}, "body"),
    ({"type": "sync", "conversation_id": "c", "after_seq": -1}, "after_seq"),
    ({"type": "send", "conversation_id": "c", "client_msg_id": "k", "body": "x", "reply_to": "z"}, "reply_to"),
    # The same types as the HTTP bodies: a string, float or boolean is no integer, a 1 no boolean.
    ({"type": "send", "conversation_id": "c", "client_msg_id": "k", "body": "x", "reply_to": True}, "reply_to"),
    ({"type": "send", "conversation_id": "c", "client_msg_id": "k", "body": "x", "reply_to": 1.0}, "reply_to"),
    ({"type": "edit", "conversation_id": "c", "seq": "22", "body": "x"}, "seq"),
    ({"type": "sync", "conversation_id": "c", "after_seq": "0"}, "after_seq"),
    ({"type": "sync", "conversation_id": "c", "after_seq": False}, "after_seq"),
    ({"type": "sync", "conversation_id": "c"}, "after_seq"),
    ({"type": "react", "conversation_id": "c", "seq": 1, "emoji": "x", "on": "no"}, "on"),
    ({"type": "typing", "conversation_id": "c", "on": 1}, "on"),
    ({"type": "read", "conversation_id": "c", "seq": True}, "seq"),
])
async def test_missing_or_wrong_fields_are_invalid_naming_the_field(live, frame, field):
    *_, ws = live
    await ws.send(json.dumps(frame))
    err = await _next_of(ws, "error")
    assert err["code"] == "invalid" and err["message"].startswith(field), err


async def test_body_over_the_limit_is_too_large_and_nothing_is_stored(raychat, http, live):
    a, b, cid, ws = live
    await ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": "big",
                              "body": "é" * (raychat.settings.max_body_bytes // 2 + 1)}))
    err = await _next_of(ws, "error")
    assert err["code"] == "too_large" and err["ref"] == "big"
    r = await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)
    assert r.json()["last_seq"] == 0


async def test_send_to_unknown_conversation_is_not_found(live):
    *_, ws = live
    await ws.send(json.dumps({"type": "send", "conversation_id": "c_nope", "client_msg_id": "k1", "body": "x"}))
    err = await _next_of(ws, "error")
    assert err["code"] == "not_found" and err["ref"] == "k1"


async def test_forged_sender_and_seq_in_a_frame_are_ignored(http, live):
    a, b, cid, ws = live
    await ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": "f", "body": "x",
                              "sender_id": b.user_id, "seq": 99}))
    ack = await _next_of(ws, "ack")
    assert ack["seq"] == 1
    ev = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)).json()["events"][0]
    assert ev["sender_id"] == a.user_id and ev["seq"] == 1


async def test_repeated_invalid_frames_close_1008(live):
    *_, ws = live
    for _ in range(30):
        try:
            await ws.send('{"type":"nope"}')
        except websockets.ConnectionClosed:
            break
    assert await _close_code(ws) == 1008


async def test_server_stays_up_for_others_after_abuse(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    for bad in ("{oops", b"\xff\xfe", json.dumps({"type": "hello", "token": "forged"})):
        ws = await _raw(raychat, bad)
        await _close_code(ws)
    sa, sb = await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, b)
    await sa.send(cid, "still here")
    await sb.wait_for(lambda: sb.deduped(cid) == [1])
    await sa.close(), await sb.close()


# ---- HTTP ------------------------------------------------------------------------------------
async def test_http_malformed_json_is_invalid(http):
    r = await http.post("/v1/auth/register", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["code"] == "invalid"


@pytest.mark.parametrize("body,field", [({"password": "longenough"}, "username"),
                                        ({"username": "abc"}, "password"),
                                        ({"username": "ab", "password": "longenough"}, "username"),
                                        ({"username": "okname", "password": "short"}, "password")])
async def test_http_schema_errors_name_the_field(http, body, field):
    r = await http.post("/v1/auth/register", json=body)
    assert r.status_code in (400, 422)
    assert r.json()["code"] == "invalid" and r.json()["message"].startswith(field), r.text


async def test_http_body_over_the_limit_is_413(raychat, http):
    r = await http.post("/v1/auth/register", content=b"x" * (raychat.settings.max_http_body_bytes + 1),
                        headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "too_large"


async def test_http_message_body_over_the_limit_is_too_large(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                        json={"client_msg_id": "k", "body": "x" * (raychat.settings.max_body_bytes + 1)})
    assert r.status_code == 413 and r.json()["code"] == "too_large"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer forged.token.here"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
async def test_http_without_valid_token_is_401(http, headers):
    r = await http.get("/v1/conversations", headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_unknown_route_is_not_found_in_the_error_shape(http):
    r = await http.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_username_taken_is_conflict_and_case_folded(http):
    a = await register(http)
    r = await http.post("/v1/auth/register", json={"username": a.username.upper(), "password": "whatever123"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"


async def test_wrong_password_and_unknown_user_get_the_same_401(http):
    a = await register(http)
    r1 = await http.post("/v1/auth/login", json={"username": a.username, "password": "wrong-password"})
    r2 = await http.post("/v1/auth/login", json={"username": "nobody_" + a.username[:10], "password": "wrong-password"})
    assert r1.status_code == r2.status_code == 401
    assert r1.json() == r2.json()


async def test_reading_another_users_conversation_is_404(http):
    a, b, c = await register(http), await register(http), await register(http)
    cid = await create_group(http, a, [b])
    for path in (f"/v1/conversations/{cid}", f"/v1/conversations/{cid}/messages", f"/v1/conversations/{cid}/events"):
        r = await http.get(path, headers=c.auth)
        assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_direct_conversation_with_unknown_user_or_self_is_rejected(http):
    a = await register(http)
    r = await http.post("/v1/conversations", headers=a.auth, json={"kind": "direct", "members": ["u_nobody"]})
    assert r.status_code == 404
    r = await http.post("/v1/conversations", headers=a.auth, json={"kind": "direct", "members": [a.user_id]})
    assert r.status_code == 422 and r.json()["code"] == "invalid"


# ---- found by a client written from the contract alone ---------------------------------------
async def test_a_lone_surrogate_in_a_body_is_invalid_over_http_and_the_socket(http, live):
    a, _, cid, ws = live
    raw = b'{"client_msg_id": "k1", "body": "a\\ud800b"}'
    r = await http.post(f"/v1/conversations/{cid}/messages", headers={**a.auth, "content-type": "application/json"},
                        content=raw)
    assert r.status_code == 422 and r.json()["code"] == "invalid" and "Unicode" in r.json()["message"], r.text
    ok = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth, json={"client_msg_id": "k2", "body": "hi"})
    assert ok.status_code == 201 and ok.json()["seq"] == 1          # no seq was spent on the bad one
    r = await http.patch(f"/v1/conversations/{cid}/messages/1", headers={**a.auth, "content-type": "application/json"},
                         content=b'{"body": "x\\udc00"}')
    assert r.status_code == 422 and "Unicode" in r.json()["message"], r.text
    await ws.send('{"type":"send","conversation_id":"%s","client_msg_id":"k3","body":"\\ud800"}' % cid)
    err = await _next_of(ws, "error")
    assert (err["code"], err["ref"]) == ("invalid", "k3") and "Unicode" in err["message"], err


async def test_a_lone_surrogate_in_a_client_msg_id_is_invalid_without_an_echo(live):
    *_, cid, ws = live
    await ws.send('{"type":"send","conversation_id":"%s","client_msg_id":"a\\udfff","body":"x"}' % cid)
    err = await _next_of(ws, "error")
    assert err["code"] == "invalid" and "ref" not in err and err["message"].startswith("client_msg_id"), err
    await ws.send('{"type":"ping"}')
    await _next_of(ws, "pong")                                       # the socket stays


async def test_other_senders_are_untouched_by_a_bad_body_sent_among_theirs(http, raychat):
    a, b, c = await register(http), await register(http), await register(http)
    cid = await create_group(http, a, [b, c])
    bad = b'{"client_msg_id": "bad", "body": "\\ud800"}'

    async def send(user, n):
        return await http.post(f"/v1/conversations/{cid}/messages", headers=user.auth,
                               json={"client_msg_id": f"{user.user_id}-{n}", "body": "hi"})

    for _ in range(3):
        answers = await asyncio.gather(
            http.post(f"/v1/conversations/{cid}/messages", headers={**a.auth, "content-type": "application/json"},
                      content=bad),
            *(send(u, n) for n in range(5) for u in (b, c)))
        assert answers[0].status_code == 422
        assert all(r.status_code in (200, 201) for r in answers[1:]), [r.text for r in answers[1:]]
    events = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth, params={"limit": 1000})).json()
    messages = [e for e in events["events"] if e["kind"] == "message"]
    assert len(messages) == 10 and {e["sender_id"] for e in messages} == {b.user_id, c.user_id}
    assert [e["seq"] for e in events["events"]] == list(range(1, events["last_seq"] + 1))


async def test_a_frame_that_is_json_but_no_object_is_invalid_and_the_socket_stays(live):
    *_, ws = live
    for frame in ("[1, 2]", '"hi"', "5"):
        await ws.send(frame)
        err = await _next_of(ws, "error")
        assert err["code"] == "invalid" and err["message"].startswith("frame"), err
    await ws.send('{"type":"ping"}')
    await _next_of(ws, "pong")


@pytest.mark.parametrize("since", [{"c": -1}, {"c": 2**63}, {"c": 1.5}, {"c": "5"}, [1, 2]])
async def test_a_hello_with_a_bad_since_is_invalid_naming_it_then_closes(raychat, http, since):
    a = await register(http)
    ws = await _raw(raychat, json.dumps({"type": "hello", "token": a.token, "since": since}))
    err = await _next_of(ws, "error")
    assert err["code"] == "invalid" and err["message"].startswith("since"), err
    assert await _close_code(ws) == 1008


async def test_a_hello_since_past_the_last_event_is_said_and_mutes_nothing(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth, json={"client_msg_id": "k0", "body": "x"})
    ws = await _raw(raychat, json.dumps({"type": "hello", "token": b.token, "since": {cid: 1000}}))
    err = await _next_of(ws, "error")
    assert (err["code"], err["ref"]) == ("invalid", cid) and "(1)" in err["message"], err
    for n in range(1, 4):
        await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth, json={"client_msg_id": f"k{n}", "body": "x"})
    assert [(await _next_of(ws, "event"))["seq"] for _ in range(3)] == [2, 3, 4]
    await ws.close()


async def test_an_edit_to_the_text_a_message_has_changes_nothing(http, live):
    a, _, cid, ws = live
    await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth, json={"client_msg_id": "k", "body": "hi"})
    r = await http.patch(f"/v1/conversations/{cid}/messages/1", headers=a.auth, json={"body": "hi"})
    assert r.status_code == 204
    r = await http.patch(f"/v1/conversations/{cid}/messages/1", headers=a.auth, json={"body": "hi there"})
    assert r.status_code == 200 and r.json()["seq"] == 2
    await ws.send(json.dumps({"type": "edit", "conversation_id": cid, "seq": 1, "body": "hi there", "ref": "e1"}))
    ack = await _next_of(ws, "ack")
    assert ack["ref"] == "e1" and ack["seq"] is None
    last = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)).json()["last_seq"]
    assert last == 2
