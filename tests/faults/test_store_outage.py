"""The store stops answering writes: sends get `unavailable` within the configured timeout
(never a hang, never a 500), and once it is back the retried sends land exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pymongo
import pytest

from tests.chat_client import RetryingSender, Socket, create_group, register

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def writes_hang(mongo_server, seconds: float):
    admin = pymongo.MongoClient(mongo_server.uri, timeoutMS=5000).admin
    admin.command("configureFailPoint", "failCommand", mode="alwaysOn",
                  data={"failCommands": ["insert"], "blockConnection": True, "blockTimeMS": int(seconds * 1000)})
    try:
        yield
    finally:
        admin.command("configureFailPoint", "failCommand", mode="off")


async def test_http_send_while_the_store_hangs_is_503_within_the_timeout(raychat, http, mongo_server):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    limit = raychat.settings.store_timeout_ms / 1000
    with writes_hang(mongo_server, 6):
        t0 = time.monotonic()
        r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                            json={"client_msg_id": "k1", "body": "during"})
        took = time.monotonic() - t0
    assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
    assert took < limit * 2 + 2
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                        json={"client_msg_id": "k1", "body": "during"})
    assert r.status_code == 201 and r.json()["seq"] == 1
    events = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)).json()["events"]
    assert [e["client_msg_id"] for e in events] == ["k1"]


async def test_websocket_senders_retrying_through_an_outage_land_everything_once(raychat, http, mongo_server):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa, sb = await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, b)
    sender = RetryingSender(sa, cid, resend_after=5.0)
    for i in range(20):
        await sender.send(f"before-{i}")
    await sender.drain(timeout=30)
    with writes_hang(mongo_server, 6):
        for i in range(20):
            await sender.send(f"during-{i}")
        await sa.wait_for(lambda: any(e["code"] == "unavailable" for e in sa.errors), timeout=20)
    await sender.drain(timeout=60)
    events = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth,
                             params={"limit": 1000})).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, 41))
    assert len({e["client_msg_id"] for e in events}) == 40
    await sb.wait_for(lambda: sb.deduped(cid) == list(range(1, 41)), timeout=30)
    await sa.close(), await sb.close()
