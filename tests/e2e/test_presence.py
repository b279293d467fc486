"""Presence: online while any socket lives, offline with last_seen after the last one closes
(after a short grace period), frames to direct contacts, bulk reads from Redis."""

from __future__ import annotations

import asyncio

import pytest
import ray

from actors.directory import current_view
from actors.placement import owner
from tests.chat_client import Socket, register

pytestmark = pytest.mark.e2e


async def _presence(http, asker, *users):
    r = await http.get("/v1/presence", headers=asker.auth, params={"user_ids": ",".join(u.user_id for u in users)})
    assert r.status_code == 200, r.text
    return r.json()


async def test_online_with_any_device_offline_after_the_last_closes(raychat, http):
    a, b = await register(http), await register(http)
    await http.post("/v1/conversations", headers=a.auth, json={"kind": "direct", "members": [b.user_id]})
    sb = await Socket.open(raychat.ws_url, b)
    s1, s2 = await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, a)
    await sb.wait_for(lambda: any(f["type"] == "presence" and f["user_id"] == a.user_id
                                  and f["status"] == "online" for f in sb.frames))
    assert (await _presence(http, b, a))[a.user_id]["status"] == "online"
    await s1.close()
    await asyncio.sleep(3)       # past the grace period: the other device keeps a online
    assert (await _presence(http, b, a))[a.user_id]["status"] == "online"
    await s2.close()
    await sb.wait_for(lambda: any(f["type"] == "presence" and f["user_id"] == a.user_id
                                  and f["status"] == "offline" for f in sb.frames), timeout=10)
    p = (await _presence(http, b, a))[a.user_id]
    assert p["status"] == "offline" and p["last_seen"]
    # Back online: last_seen is null again, as in the presence frame (the store keeps the sign-off).
    sa = await Socket.open(raychat.ws_url, a)
    await sb.wait_for(lambda: [f["status"] for f in sb.frames if f["type"] == "presence"
                               and f["user_id"] == a.user_id][-1:] == ["online"], timeout=10)
    assert (await _presence(http, b, a))[a.user_id] == {"status": "online", "last_seen": None}
    await sa.close(), await sb.close()


async def test_a_quick_reconnect_is_not_news(raychat, http):
    a, b = await register(http), await register(http)
    await http.post("/v1/conversations", headers=a.auth, json={"kind": "direct", "members": [b.user_id]})
    sb = await Socket.open(raychat.ws_url, b)
    sa = await Socket.open(raychat.ws_url, a)
    await sb.wait_for(lambda: any(f["type"] == "presence" for f in sb.frames))
    await sa.close()
    sa = await Socket.open(raychat.ws_url, a)
    await asyncio.sleep(3)
    assert [f["status"] for f in sb.frames if f["type"] == "presence" and f["user_id"] == a.user_id] == ["online"]
    await sa.close(), await sb.close()


async def test_presence_reads_up_to_500_ids_in_one_call(http):
    a = await register(http)
    ids = ",".join([a.user_id] + [f"u_none{i}" for i in range(499)])
    r = await http.get("/v1/presence", headers=a.auth, params={"user_ids": ids})
    assert r.status_code == 200 and len(r.json()) == 500
    r = await http.get("/v1/presence", headers=a.auth, params={"user_ids": ids + ",u_one_more"})
    assert r.status_code == 422


async def _host_back(name: str, namespace: str, timeout_s: float = 60.0) -> None:
    """The directory starts a host killed for good again under its name (actors/directory.py)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await ray.get_actor(name, namespace=namespace).ready.remote()
            return
        except (ValueError, ray.exceptions.RayActorError):
            assert asyncio.get_running_loop().time() < deadline, f"{name} was not started again"
            await asyncio.sleep(0.2)


async def test_users_of_a_killed_host_go_offline_by_themselves(raychat, http):
    a, b = await register(http), await register(http)
    sa = await Socket.open(raychat.ws_url, a)
    assert (await _presence(http, b, a))[a.user_id]["status"] == "online"
    name = owner(("user", a.user_id), current_view(raychat.settings.namespace).hosts)
    ray.kill(ray.get_actor(name, namespace=raychat.settings.namespace), no_restart=True)
    # The socket goes with the host, before the directory starts the host again (the gateway
    # would register a live socket there): the offline is written by no one, only the TTL.
    await sa.close()
    try:
        deadline = asyncio.get_running_loop().time() + raychat.settings.presence_ttl_s + 10
        while (await _presence(http, b, a))[a.user_id]["status"] == "online":
            assert asyncio.get_running_loop().time() < deadline, "still online after the TTL"
            await asyncio.sleep(0.5)
    finally:
        await _host_back(name, raychat.settings.namespace)
    sb = await Socket.open(raychat.ws_url, b)
    assert (await _presence(http, a, b))[b.user_id]["status"] == "online"
    await sb.close()
