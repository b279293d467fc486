"""Push notifications through the session raychat: device routes on the gateway, and the
PushWorker application delivering signed webhooks to the local receiver (tests/fixtures_push.py)
for members without a live socket."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest

from tests.chat_client import Socket, create_group, register
from tests.fixtures_push import WEBHOOK_SECRET

pytestmark = pytest.mark.e2e


async def add_webhook(http, user, server) -> str:
    r = await http.post("/v1/devices", headers=user.auth,
                        json={"platform": "webhook", "token": f"{server.http_url}/hooks/{user.user_id}"})
    assert r.status_code == 201, r.text
    return r.json()["device_id"]


async def wait_for_push(server, user, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        seen = server.sends(f"/hooks/{user.user_id}")
        if seen:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"no push for {user.user_id} within {timeout} s")


# ---- device routes ------------------------------------------------------------------------------

async def test_register_list_and_remove_a_device(http, raychat, providers_server):
    u = await register(http, "dev")
    first = await add_webhook(http, u, providers_server)
    assert await add_webhook(http, u, providers_server) == first, "registering again is idempotent"
    r = await http.post("/v1/devices", headers=u.auth, json={"platform": "apns", "token": "AB" * 32})
    assert r.status_code == 201
    listed = (await http.get("/v1/devices", headers=u.auth)).json()["devices"]
    assert [(d["device_id"], d["platform"]) for d in listed] == [(first, "webhook"), (r.json()["device_id"], "apns")]
    assert listed[0]["token_hint"] == f"{providers_server.http_url}/…"
    assert listed[1]["token_hint"] == "…" + "ab" * 3 and "ab" * 32 not in json.dumps(listed)
    assert (await http.delete(f"/v1/devices/{first}", headers=u.auth)).status_code == 204
    r = await http.delete(f"/v1/devices/{first}", headers=u.auth)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert len((await http.get("/v1/devices", headers=u.auth)).json()["devices"]) == 1


async def test_only_ones_own_device_can_be_removed(http, raychat, providers_server):
    owner, other = await register(http, "dev"), await register(http, "dev")
    device = await add_webhook(http, owner, providers_server)
    r = await http.delete(f"/v1/devices/{device}", headers=other.auth)
    assert r.status_code == 404
    assert len((await http.get("/v1/devices", headers=owner.auth)).json()["devices"]) == 1


@pytest.mark.parametrize("body, field", [
    ({"platform": "webhook", "token": "https://10.0.0.1/hook"}, "token"),
    ({"platform": "webhook", "token": "http://169.254.169.254/latest/meta-data"}, "token"),
    ({"platform": "apns", "token": "not-hex"}, "token"),
    ({"platform": "fcm", "token": "x"}, "token"),
    ({"platform": "sms", "token": "x" * 40}, "platform"),
    ({"platform": "fcm"}, "token"),
    ({"platform": "fcm", "token": "x" * 5000}, "token"),
])
async def test_bad_devices_are_422_naming_the_field(http, raychat, body, field):
    u = await register(http, "dev")
    r = await http.post("/v1/devices", headers=u.auth, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid" and field in r.json()["message"]


async def test_device_routes_need_a_token(http, raychat):
    assert (await http.get("/v1/devices")).status_code == 401
    assert (await http.post("/v1/devices", json={"platform": "fcm", "token": "x" * 40})).status_code == 401


# ---- pushes -------------------------------------------------------------------------------------

async def test_a_member_without_a_socket_gets_a_signed_webhook(http, raychat, providers_server):
    alice, bob = await register(http, "push"), await register(http, "push")
    device = await add_webhook(http, bob, providers_server)
    cid = await create_group(http, alice, [bob], title="Lunch")
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=alice.auth,
                        json={"client_msg_id": "k1", "body": "noon at the usual place?"})
    assert r.status_code == 201, r.text
    [seen] = await wait_for_push(providers_server, bob)
    stamp = seen.headers["x-raychat-timestamp"]
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + seen.body, hashlib.sha256).hexdigest()
    assert seen.headers["x-raychat-signature"] == f"sha256={mac}"
    assert abs(int(stamp) - time.time()) < 60
    body = json.loads(seen.body)
    assert body == {"type": "message", "device_id": device, "conversation_id": cid, "seq": r.json()["seq"],
                    "title": f"{alice.username} in Lunch", "body": "noon at the usual place?",
                    "sender_id": alice.user_id}


async def test_every_offline_member_gets_a_push_whichever_host_owns_them(http, raychat, providers_server):
    # Each recipient's own host enqueues the job for it: members spread over both hosts.
    alice = await register(http, "push")
    members = [await register(http, "push") for _ in range(6)]
    for u in members:
        await add_webhook(http, u, providers_server)
    cid = await create_group(http, alice, members)
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=alice.auth,
                        json={"client_msg_id": "k1", "body": "all hands"})
    assert r.status_code == 201, r.text
    for u in members:
        [seen] = await wait_for_push(providers_server, u)
        assert json.loads(seen.body)["seq"] == r.json()["seq"]


async def test_a_member_with_a_live_socket_gets_no_push(http, raychat, providers_server):
    alice, online, away = await register(http, "push"), await register(http, "push"), await register(http, "push")
    for u in (online, away):
        await add_webhook(http, u, providers_server)
    cid = await create_group(http, alice, [online, away])
    sock = await Socket.open(raychat.ws_url, online)
    try:
        r = await http.post(f"/v1/conversations/{cid}/messages", headers=alice.auth,
                            json={"client_msg_id": "k1", "body": "anyone?"})
        assert r.status_code == 201, r.text
        await sock.wait_for(lambda: any(f.get("type") == "event" and f.get("seq") == r.json()["seq"]
                                        for f in sock.frames))
        await wait_for_push(providers_server, away)      # the message job was handled...
        await asyncio.sleep(1.0)                          # ...and its deliveries had time to go out
        assert providers_server.sends(f"/hooks/{online.user_id}") == []
    finally:
        await sock.close()
