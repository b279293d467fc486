"""The store stops answering: sends get `unavailable` within the configured timeout (never a
hang, never a 500), and once it is back the retried sends land exactly once.

The first two tests hang only inserts on the session store (a fail point). The last two take
the whole store of the ``faulty`` app away while clients chat (tests/faults/harness.py): for
5 s it hangs (SIGSTOP: connections stay open and nothing answers, the nastier case), for 30 s
it is stopped and started again on the same port and data directory (connections refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pymongo
import pytest

from tests.chat_client import RetryingSender, Socket, create_group, register
from tests.faults.harness import Target, run_fault

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


async def test_the_store_hanging_for_5_s_loses_and_duplicates_nothing(faulty, scale):
    async def hang(h):
        h.began()
        faulty.pause_store()
        try:
            await asyncio.sleep(5)
        finally:
            faulty.resume_store()
        h.cleared()

    report = await run_fault(Target(faulty.base_url), scale, "store-hang-5s", hang)
    assert report.ok, report.explain()
    # Acks of writes made just before the fault, or answered from a conversation's dedupe window,
    # may come during it; what shows the outage is a long stretch with no ack at all.
    assert all(c.longest_silence_s >= 4 for c in report.cycles), "the traffic never stopped: the store never hung"


async def test_the_store_down_for_30_s_loses_and_duplicates_nothing(faulty, scale):
    async def down(h):
        await asyncio.to_thread(faulty.stop_store)
        h.began()       # once it is down: a clean stop goes on answering while it shuts down
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.to_thread(faulty.start_store)
        h.cleared()

    report = await run_fault(Target(faulty.base_url), scale, "store-down-30s", down)
    assert report.ok, report.explain()
    assert all(c.longest_silence_s >= 24 for c in report.cycles), "the traffic never stopped: the store was not down"
