"""Messaging end to end through Serve with real WebSocket clients."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e


async def test_direct_conversation_is_one_per_pair_and_delivers_both_ways(raychat, http):
    a, b = await register(http), await register(http)
    r1 = await http.post("/v1/conversations", headers=a.auth, json={"kind": "direct", "members": [b.user_id]})
    r2 = await http.post("/v1/conversations", headers=b.auth, json={"kind": "direct", "members": [a.user_id]})
    assert (r1.status_code, r2.status_code) == (201, 200)
    cid = r1.json()["conversation_id"]
    assert r2.json()["conversation_id"] == cid
    sa, sb = await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, b)
    k1 = await sa.send(cid, "hello b")
    await sa.wait_for(lambda: k1 in sa.acks)
    k2 = await sb.send(cid, "hello a")
    await sb.wait_for(lambda: k2 in sb.acks)
    for s in (sa, sb):
        await s.wait_for(lambda s=s: s.deduped(cid) == [1, 2])
    assert sa.acks[k1]["seq"] == 1 and sb.acks[k2]["seq"] == 2
    assert sb.bodies[(cid, 1)] == "hello b"
    await sa.close(), await sb.close()


async def test_group_of_five_with_500_concurrent_messages_every_socket_gets_all_in_order(raychat, http):
    users = [await register(http) for _ in range(5)]
    cid = await create_group(http, users[0], users[1:])
    # One member has two devices: the sender's other device must get everything too.
    sockets = [await Socket.open(raychat.ws_url, u) for u in users] + [await Socket.open(raychat.ws_url, users[0])]
    senders = sockets[:4]
    sent: dict[str, Socket] = {}

    async def blast(sock: Socket, n: int):
        for i in range(n):
            cmid = await sock.send(cid, f"m{i}")
            sent[cmid] = sock
            if i % 10 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(blast(s, 125) for s in senders))
    for s in senders:
        await s.wait_for(lambda s=s: sum(1 for k, v in sent.items() if v is s and k in s.acks) == 125, timeout=60)
    for s in sockets:
        await s.wait_for(lambda s=s: len(s.events.get(cid, [])) >= 500, timeout=60)
        assert s.events[cid] == list(range(1, 501)), "out of order, duplicated or gapped"
    acked = sorted(s.acks[k]["seq"] for k, s in sent.items())
    assert acked == list(range(1, 501))
    for s in sockets:
        await s.close()


async def test_client_that_drops_and_resumes_with_since_ends_with_identical_sequence(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa = await Socket.open(raychat.ws_url, a)
    sb = await Socket.open(raychat.ws_url, b)
    for i in range(100):
        await sa.send(cid, f"x{i}")
        if i == 40:
            await sb.wait_for(lambda: len(sb.events.get(cid, [])) >= 20)
            seen = sb.deduped(cid)
            await sb.close()
    await sa.wait_for(lambda: len(sa.acks) == 100)
    sb2 = await Socket.open(raychat.ws_url, b, since={cid: seen[-1]})
    await sb2.wait_for(lambda: sb2.deduped(cid)[-1:] == [100])
    assert seen + sb2.events[cid] == list(range(1, 101))
    await sa.close(), await sb2.close()


async def test_retried_client_msg_id_stores_one_message_and_acks_the_same_seq(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa = await Socket.open(raychat.ws_url, a)
    await sa.send(cid, "first")
    cmid = uuid.uuid4().hex
    for _ in range(5):
        await sa.send(cid, "once", cmid=cmid)
    await sa.send(cid, "last")
    await sa.wait_for(lambda: sa.deduped(cid) == [1, 2, 3])
    r = await http.get(f"/v1/conversations/{cid}/events", headers=a.auth, params={"after_seq": 0})
    bodies = [e["body"] for e in r.json()["events"]]
    assert bodies == ["first", "once", "last"]
    # The same id over HTTP answers the same event; other content is a conflict.
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                        json={"client_msg_id": cmid, "body": "once"})
    assert r.status_code == 201 and r.json()["seq"] == 2
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                        json={"client_msg_id": cmid, "body": "changed"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    await sa.close()


async def test_non_member_send_is_forbidden_and_reaches_nobody(raychat, http):
    a, b, outsider = await register(http), await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sb = await Socket.open(raychat.ws_url, b)
    so = await Socket.open(raychat.ws_url, outsider)
    cmid = await so.send(cid, "let me in")
    await so.wait_for(lambda: any(e.get("ref") == cmid for e in so.errors))
    err = next(e for e in so.errors if e.get("ref") == cmid)
    assert err["code"] == "forbidden"
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=outsider.auth,
                        json={"client_msg_id": "k", "body": "x"})
    assert r.status_code == 403
    r = await http.get(f"/v1/conversations/{cid}/events", headers=outsider.auth)
    assert r.status_code == 404
    await asyncio.sleep(0.5)
    assert cid not in sb.events
    r = await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)
    assert r.json()["events"] == [] and r.json()["last_seq"] == 0
    await sb.close(), await so.close()


async def test_http_send_reaches_sockets_and_feeds_history_and_resume_routes(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sb = await Socket.open(raychat.ws_url, b)
    for i in range(7):
        r = await http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                            json={"client_msg_id": f"h{i}", "body": f"b{i}"})
        assert r.status_code == 201 and r.json()["seq"] == i + 1
        assert r.json()["sender_id"] == a.user_id
    await sb.wait_for(lambda: sb.deduped(cid) == list(range(1, 8)))
    r = await http.get(f"/v1/conversations/{cid}/events", headers=b.auth, params={"after_seq": 3, "limit": 2})
    page = r.json()
    assert [e["seq"] for e in page["events"]] == [4, 5] and page["has_more"] and page["last_seq"] == 7
    r = await http.get(f"/v1/conversations/{cid}/messages", headers=b.auth, params={"before_seq": 6, "limit": 3})
    hist = r.json()
    assert [m["seq"] for m in hist["messages"]] == [5, 4, 3] and hist["has_more"]
    # sync over the socket replays the tail in order.
    await sb.ws.send('{"type":"sync","conversation_id":"%s","after_seq":5}' % cid)
    await sb.wait_for(lambda: sb.events[cid][-2:] == [6, 7] and len(sb.events[cid]) == 9)
    await sb.close()


async def test_conversation_list_most_recent_first(raychat, http):
    a, b = await register(http), await register(http)
    c1 = await create_group(http, a, [b], "one")
    c2 = await create_group(http, a, [b], "two")
    r = await http.post(f"/v1/conversations/{c1}/messages", headers=a.auth, json={"client_msg_id": "x", "body": "y"})
    assert r.status_code == 201
    await asyncio.sleep(0.3)   # activity is recorded after the ack
    r = await http.get("/v1/conversations", headers=b.auth)
    ids = [c["conversation_id"] for c in r.json()["conversations"]]
    assert ids[:2] == [c1, c2]


async def test_one_sockets_burst_is_stored_in_the_order_it_was_sent(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa = await Socket.open(raychat.ws_url, a)
    cmids = [await sa.send(cid, f"n{i}") for i in range(150)]     # no waiting between frames
    await sa.wait_for(lambda: all(k in sa.acks for k in cmids), timeout=60)
    assert [sa.acks[k]["seq"] for k in cmids] == list(range(1, 151))
    events = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth,
                             params={"limit": 1000})).json()["events"]
    assert [e["body"] for e in events] == [f"n{i}" for i in range(150)]
    await sa.close()
