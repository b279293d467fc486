"""PresenceStore contract: every adapter subclasses PresenceStoreContract with a ``store`` fixture.

TTL tests sleep for real (1-2 s): expiry is the server's job, so there is no clock to fake.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from storage.ports import PresenceStore

SEEN = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
OFFLINE = {"status": "offline", "last_seen": None}


async def offline_within(store: PresenceStore, user_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (await store.get([user_id]))[user_id]["status"] == "offline":
            return True
        await asyncio.sleep(0.1)
    return False


class PresenceStoreContract:
    @pytest.fixture
    def store(self) -> PresenceStore:
        raise NotImplementedError

    async def test_unknown_users_are_offline_never_seen(self, store):
        assert await store.get(["u1", "u2"]) == {"u1": OFFLINE, "u2": OFFLINE}

    async def test_get_of_nobody_is_empty(self, store):
        assert await store.get([]) == {}

    async def test_set_online_marks_online(self, store):
        await store.set_online("u1", 30)
        assert (await store.get(["u1"]))["u1"]["status"] == "online"

    async def test_online_mark_expires_after_its_ttl(self, store):
        await store.set_online("u1", 1)
        assert (await store.get(["u1"]))["u1"]["status"] == "online"
        assert await offline_within(store, "u1", 2.5)

    async def test_refresh_extends_only_users_still_online(self, store):
        await store.set_online("online", 1)
        await store.set_online("left", 30)
        await store.set_offline("left", SEEN)
        assert await store.refresh(["online", "left", "never"], 30) == ["left", "never"]
        await asyncio.sleep(1.3)              # past the first ttl
        got = await store.get(["online", "left", "never"])
        assert [got[u]["status"] for u in ("online", "left", "never")] == ["online", "offline", "offline"]

    async def test_refresh_of_nobody_is_a_no_op(self, store):
        assert await store.refresh([], 30) == []

    async def test_set_offline_clears_the_mark_and_records_last_seen(self, store):
        await store.set_online("u1", 30)
        await store.set_offline("u1", SEEN)
        assert await store.get(["u1"]) == {"u1": {"status": "offline", "last_seen": SEEN}}

    async def test_last_seen_outlives_a_new_session(self, store):
        await store.set_offline("u1", SEEN)
        await store.set_online("u1", 30)
        assert await store.get(["u1"]) == {"u1": {"status": "online", "last_seen": SEEN}}

    async def test_last_seen_comes_back_aware_utc(self, store):
        await store.set_offline("u1", SEEN)
        last_seen = (await store.get(["u1"]))["u1"]["last_seen"]
        assert last_seen.utcoffset() is not None and last_seen.utcoffset().total_seconds() == 0

    async def test_get_answers_for_500_users_at_once(self, store):
        users = [f"u{n}" for n in range(500)]
        for user_id in users[::2]:
            await store.set_online(user_id, 30)
        got = await store.get(users)
        assert len(got) == 500
        assert [got[u]["status"] for u in users] == ["online", "offline"] * 250


class TestRedisPresence(PresenceStoreContract):
    @pytest.fixture
    def store(self, presence):
        return presence

    async def test_get_is_a_single_command(self, presence, redis_server):
        """One MGET however many users: one round trip."""
        spy = Redis.from_url(redis_server.uri)
        await presence.ping()                 # connection set-up commands out of the way
        try:
            before = await spy.info("commandstats")
            await presence.get([f"u{n}" for n in range(500)])
            after = await spy.info("commandstats")
        finally:
            await spy.aclose()
        calls = {k: after[k]["calls"] - before.get(k, {}).get("calls", 0) for k in after}
        assert {k: n for k, n in calls.items() if n and k != "cmdstat_info"} == {"cmdstat_mget": 1}


class TestRedisClusterPresence(PresenceStoreContract):
    @pytest.fixture
    def store(self, cluster_presence):
        return cluster_presence

    async def test_a_users_two_keys_share_a_slot_and_users_spread_over_every_node(self, cluster_presence,
                                                                               redis_cluster):
        """set_offline's script needs both keys of a user in one slot; MGET across users is split
        per slot. Users land on every master, so a cross-slot command could not pass unnoticed."""
        store = cluster_presence
        users = [f"u{n}" for n in range(60)]
        for user_id in users:
            await store.set_online(user_id, 30)
            await store.set_offline(user_id, SEEN)
        await store.set_online("u0", 30)
        got = await store.get(users)
        assert got["u0"]["status"] == "online" and all(got[u] == {"status": "offline", "last_seen": SEEN}
                                                       for u in users[1:])
        assert all(key_slot(store._online(u).encode()) == key_slot(store._seen(u).encode()) for u in users)
        holders = []
        for node in redis_cluster.nodes:
            spy = Redis.from_url(node.uri)
            try:
                holders.append(len(await spy.keys(store._prefix + "*")))
            finally:
                await spy.aclose()
        assert sum(holders) == 61 and all(n > 0 for n in holders), holders


@pytest.fixture(params=["single", "cluster"])
def any_presence(request):
    return request.getfixturevalue("presence" if request.param == "single" else "cluster_presence")


async def test_a_burst_past_the_pool_waits_for_connections_instead_of_failing(any_presence):
    """300 users going offline at once (a replica's sockets closing) with a pool of 100: every
    mark is cleared; none fails with redis-py's "Too many connections" (on a cluster: its
    MaxConnectionsError)."""
    from storage.redis_store import POOL_CONNECTIONS

    presence = any_presence
    users = [f"burst{n}" for n in range(3 * POOL_CONNECTIONS)]
    await asyncio.gather(*(presence.set_online(u, 30) for u in users))
    await asyncio.gather(*(presence.set_offline(u, SEEN) for u in users))
    got = await presence.get(users)
    assert all(got[u] == {"status": "offline", "last_seen": SEEN} for u in users)
