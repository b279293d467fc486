"""What Redis Cluster adds to the Redis adapters: errors a single server never gives, and a node
that goes away and comes back. The contract suites run on the cluster too (TestRedisCluster*)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Awaitable, Callable

import pytest
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    CrossSlotTransactionError,
    MasterDownError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from storage.embedded import CLUSTER_SLOTS
from storage.errors import StoreRejected, StoreUnavailable
from storage.redis_store import RedisPresence, connect, redis_errors

TIMEOUT_S = 0.5
MARGIN_S = 2.5


def node_of(key: str, masters: int) -> int:
    """The node start_redis_cluster gave the key's slot to."""
    slot = key_slot(key.encode())
    return next(i for i in range(masters) if i * CLUSTER_SLOTS // masters <= slot < (i + 1) * CLUSTER_SLOTS // masters)


async def eventually(call: Callable[[], Awaitable[Any]], within_s: float = 15.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_a_node_restart_is_store_unavailable_for_its_keys_then_heals(redis_cluster):
    """While a master is down, calls on its slots fail fast as StoreUnavailable and the other
    masters' slots still answer; once it is back (empty: nothing persists), the same adapter
    works on it again. Anything else it raises meanwhile (CLUSTERDOWN while it rejoins) is
    StoreUnavailable too, or ``eventually`` would fail."""
    masters = len(redis_cluster.nodes)
    presence = RedisPresence(redis_cluster.uri, timeout_s=TIMEOUT_S, prefix=f"test:{uuid.uuid4().hex}:")
    users = {node_of(presence._online(u), masters): u for u in (f"u{n}" for n in range(200))}
    down, up = users[1], users[0]
    try:
        await presence.set_online(down, 30)
        redis_cluster.stop_node(1)
        try:
            for call in (lambda: presence.get([down]), lambda: presence.set_offline(down, _now())):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await call()
                assert time.monotonic() - started < TIMEOUT_S + MARGIN_S
            await eventually(lambda: presence.set_online(up, 30), within_s=5)
        finally:
            await asyncio.to_thread(redis_cluster.start_node, 1)
        await eventually(lambda: presence.set_online(down, 30))
        got = await presence.get([down, up])
        assert (got[down]["status"], got[up]["status"]) == ("online", "online")
    finally:
        await presence.close()


async def test_a_cross_slot_command_is_rejected_not_an_outage(redis_cluster):
    """A command over keys of several slots is raychat's bug: StoreRejected, never hidden as an
    outage (limits fail open on StoreUnavailable)."""
    client = connect(redis_cluster.uri, 3.0)
    keys = ["test:a", "test:b", "test:c"]
    assert len({key_slot(k.encode()) for k in keys}) > 1
    try:
        with pytest.raises(StoreRejected):
            async with redis_errors(3.0):
                await client.mget(keys)
        with pytest.raises(StoreRejected, match="same slot"):     # the server's CROSSSLOT
            async with redis_errors(3.0):
                await client.execute_command("MGET", *keys, target_nodes=client.get_default_node())
    finally:
        await client.aclose()


async def test_a_cluster_url_naming_a_single_server_is_rejected(redis_server):
    presence = RedisPresence(f"redis+cluster://127.0.0.1:{redis_server.port}", timeout_s=TIMEOUT_S)
    try:
        with pytest.raises(StoreRejected, match="[Cc]luster"):
            await presence.ping()
    finally:
        await presence.close()


@pytest.mark.parametrize("error", [
    ClusterDownError("CLUSTERDOWN The cluster is down"),
    MasterDownError("MASTERDOWN Link with MASTER is down"),
    TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    ClusterError("TTL exhausted."),
    SlotNotCoveredError('Slot "7" is not covered by the cluster.'),
    RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node: x"),
    RedisClusterException("All slots are not covered after query all startup_nodes. 10 of 16384 covered..."),
], ids=lambda e: type(e).__name__)
async def test_cluster_outages_are_store_unavailable(error):
    with pytest.raises(StoreUnavailable):
        async with redis_errors(1.0):
            raise error


@pytest.mark.parametrize("error", [
    ResponseError("CROSSSLOT Keys in request don't hash to the same slot"),
    CrossSlotTransactionError("All keys involved in a cluster transaction must map to the same slot"),
    RedisClusterException("MGET - all keys must map to the same key slot"),
], ids=lambda e: type(e).__name__)
async def test_cluster_misuse_is_store_rejected(error):
    with pytest.raises(StoreRejected):
        async with redis_errors(1.0):
            raise error


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
