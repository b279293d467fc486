"""Per message, fan-out costs O(hosts + gateway replicas) calls between processes, never O(members).

Those calls travel over the hosts' call links (actors/host_rpc.py), none as a Ray call; a host
counts the deliveries it makes to others."""

from __future__ import annotations

import pytest
import ray

from actors.directory import current_view
from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e


async def test_calls_per_message_do_not_grow_with_members(raychat, http):
    users = [await register(http) for _ in range(24)]
    cid = await create_group(http, users[0], users[1:])
    sockets = [await Socket.open(raychat.ws_url, u) for u in users]
    names = current_view(raychat.settings.namespace).hosts
    hosts = [ray.get_actor(n, namespace=raychat.settings.namespace) for n in names]

    async def calls_out() -> int:
        return sum([(await h.stats.remote())["peer_calls_out"] for h in hosts])

    before = await calls_out()
    messages = 30
    for i in range(messages):   # one at a time: no batching helps the count
        k = await sockets[0].send(cid, f"m{i}")
        await sockets[0].wait_for(lambda k=k: k in sockets[0].acks)
    for s in sockets:
        await s.wait_for(lambda s=s: len(s.deduped(cid)) == messages)
    per_message = (await calls_out() - before) / messages
    # At most one call to each other host; O(members) would be ~24.
    assert per_message <= len(names) - 1
    for s in sockets:
        await s.close()
