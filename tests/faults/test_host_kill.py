"""Kill the ActorHost that owns a conversation while members send and retry.

Pass: every acknowledged event stored exactly once, the store's seq gap-free,
every socket's deduped sequence equal to the store's, and the conversation
going on at the next seq once Ray has restarted the host.
"""

from __future__ import annotations

import asyncio

import pytest
import ray

from actors.placement import host_names, owner
from tests.chat_client import RetryingSender, Socket, create_group, register

pytestmark = pytest.mark.e2e


async def _all_events(http, user, cid) -> list[dict]:
    events, after = [], 0
    while True:
        r = await http.get(f"/v1/conversations/{cid}/events", headers=user.auth,
                           params={"after_seq": after, "limit": 1000})
        assert r.status_code == 200, r.text
        page = r.json()
        events += page["events"]
        if not page["has_more"]:
            return events
        after = events[-1]["seq"]


async def test_killing_the_conversation_host_mid_traffic_loses_and_duplicates_nothing(raychat, http):
    users = [await register(http) for _ in range(4)]
    cid = await create_group(http, users[0], users[1:])
    sockets = [await Socket.open(raychat.ws_url, u) for u in users]
    senders = [RetryingSender(s, cid) for s in sockets[:2]]
    target = owner(("conv", cid), host_names(raychat.settings.hosts))
    host = ray.get_actor(target, namespace=raychat.settings.namespace)
    per_sender = 150

    async def traffic(sender: RetryingSender):
        for i in range(per_sender):
            await sender.send(f"{id(sender)}-{i}")
            await sender.pump()
            await asyncio.sleep(0.01)

    runs = [asyncio.ensure_future(traffic(s)) for s in senders]
    await asyncio.sleep(0.6)
    acked_before = sum(len(s.sock.acks) for s in senders)
    ray.kill(host, no_restart=False)
    await asyncio.gather(*runs)
    for s in senders:
        await s.drain(timeout=90)
    assert acked_before > 0, "the kill should land mid-traffic"

    events = await _all_events(http, users[0], cid)
    seqs = [e["seq"] for e in events]
    total = per_sender * len(senders)
    assert seqs == list(range(1, len(seqs) + 1)), "gap or reuse in the store"
    cmids = [e["client_msg_id"] for e in events]
    assert len(cmids) == len(set(cmids)) == total, "lost or duplicated"
    by_cmid = {e["client_msg_id"]: e["seq"] for e in events}
    for s in senders:
        for cmid, ack in s.sock.acks.items():
            assert by_cmid[cmid] == ack["seq"], "an ack named a seq the store does not have"

    for s in sockets:
        await s.wait_for(lambda s=s: s.deduped(cid) == seqs, timeout=60)

    after = sockets[2]
    cmid = await after.send(cid, "after the fault")
    await after.wait_for(lambda: cmid in after.acks, timeout=30)
    assert after.acks[cmid]["seq"] == total + 1
    print(f"sent={sum(s.sent for s in senders)} acked={total} retried={sum(s.retried for s in senders)} "
          f"lost=0 duplicates=0")
    for s in sockets:
        await s.close()
