"""The Redis Streams job queue, on a real redis-server and on a real Redis Cluster: every test
taking ``queue`` runs on both."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from push.queue import RedisJobQueue
from storage.embedded import free_port
from storage.errors import StoreUnavailable

from .conftest import VISIBILITY_S


@pytest.fixture
async def queue(redis_uri):
    q = RedisJobQueue(redis_uri, prefix=f"test:{uuid.uuid4().hex}:push:", visibility_timeout_s=VISIBILITY_S,
                      maxlen=10_000)
    yield q
    await q.close()


def job(n, **more):
    return {"type": "delivery", "id": f"j{n}", "attempt": 0, **more}


async def test_jobs_are_read_once_in_order(queue):
    await queue.enqueue([job(1), job(2), job(3)])
    entries = await queue.read("w1", 10, 50)
    assert [e.job["id"] for e in entries] == ["j1", "j2", "j3"]
    assert await queue.read("w2", 10, 50) == []


async def test_jobs_enqueued_before_any_worker_existed_are_read(queue):
    await queue.enqueue([job(1)])        # the group does not exist yet
    assert [e.job["id"] for e in await queue.read("w1", 10, 50)] == ["j1"]


async def test_ack_forgets_the_job(queue):
    await queue.enqueue([job(1)])
    [entry] = await queue.read("w1", 10, 50)
    await queue.ack(entry.entry_id)
    assert (await queue.depth())["stream"] == 0
    await asyncio.sleep(VISIBILITY_S + 0.1)
    assert await queue.claim_stale("w2", 10) == []


async def test_a_job_read_but_never_settled_is_claimed_by_another_worker_after_the_visibility_timeout(queue):
    await queue.enqueue([job(1), job(2)])
    read = await queue.read("dead-worker", 10, 50)
    assert await queue.claim_stale("w2", 10) == [], "claimed before the visibility timeout"
    await asyncio.sleep(VISIBILITY_S + 0.1)
    claimed = await queue.claim_stale("w2", 10)
    assert [e.entry_id for e in claimed] == [e.entry_id for e in read]
    assert [e.job for e in claimed] == [e.job for e in read]


async def test_expand_replaces_a_job_by_others(queue):
    await queue.enqueue([{"type": "message", "id": "m1"}])
    [entry] = await queue.read("w1", 10, 50)
    await queue.expand(entry.entry_id, [job(1), job(2)])
    assert [e.job["id"] for e in await queue.read("w1", 10, 50)] == ["j1", "j2"]
    assert (await queue.depth())["stream"] == 2        # the message job is gone


async def test_a_retry_comes_back_only_when_due(queue):
    await queue.enqueue([job(1)])
    [entry] = await queue.read("w1", 10, 50)
    await queue.retry_later(entry.entry_id, {**entry.job, "attempt": 1}, due=1000.0)
    assert await queue.promote_due(999.9, 10) == 0
    assert await queue.read("w1", 10, 50) == []
    assert await queue.promote_due(1000.0, 10) == 1
    [again] = await queue.read("w1", 10, 50)
    assert again.job == job(1, attempt=1)
    assert await queue.depth() == {"stream": 1, "retries": 0, "dead": 0}


async def test_dead_letters_keep_the_job_and_the_reason(queue):
    await queue.enqueue([job(1)])
    [entry] = await queue.read("w1", 10, 50)
    await queue.dead_letter(entry.entry_id, entry.job, "rejected: 400 BadPayload")
    assert await queue.dead_letters() == [{"job": job(1), "reason": "rejected: 400 BadPayload"}]
    assert (await queue.depth())["stream"] == 0


async def test_collapse_lets_one_push_per_device_and_conversation_per_window(queue):
    pairs = [("d1", "c1"), ("d2", "c1"), ("d1", "c2")]
    assert await queue.collapse(pairs, "c1:4", 5.0) == [True, True, True]
    assert await queue.collapse([("d1", "c1"), ("d3", "c1")], "c1:5", 5.0) == [False, True]
    # The same message job, read again after its worker died, keeps its window.
    assert await queue.collapse([("d1", "c1")], "c1:4", 5.0) == [True]


async def test_the_collapse_window_ends(queue):
    assert await queue.collapse([("d1", "c1")], "c1:4", 0.2) == [True]
    assert await queue.collapse([("d1", "c1")], "c1:5", 0.2) == [False]
    await asyncio.sleep(0.3)
    assert await queue.collapse([("d1", "c1")], "c1:6", 0.2) == [True]


async def test_a_zero_window_collapses_nothing(queue):
    assert await queue.collapse([("d1", "c1")], "c1:4", 0) == [True]
    assert await queue.collapse([("d1", "c1")], "c1:5", 0) == [True]


async def test_an_entry_that_is_not_a_job_is_read_as_unreadable(queue):
    await queue._redis.xadd(queue.stream, {"something": "else"})
    [entry] = await queue.read("w1", 10, 50)
    assert entry.job["type"] == "unreadable"


async def test_on_a_cluster_every_key_of_a_queue_shares_one_slot_and_queues_spread(redis_cluster):
    """Settling and promoting are scripts over the stream, the retry set and the dead letters,
    and collapsing one over many keys: legal on a cluster only within one slot. Queues under
    different prefixes land on different nodes."""
    queues = [RedisJobQueue(redis_cluster.uri, prefix=f"test:{uuid.uuid4().hex}:push:") for _ in range(12)]
    try:
        for q in queues:
            keys = [q.stream, q.retries, q.dead, f"{q._collapse_prefix}d1:c1"]
            assert len({key_slot(k.encode()) for k in keys}) == 1, keys
            await q.enqueue([job(1)])
            await q.collapse([("d1", "c1"), ("d2", "c2")], "c1:1", 5.0)
        streams_per_node = []
        for node in redis_cluster.nodes:
            spy = Redis.from_url(node.uri)
            try:
                # KEYS answers from this node's own keys (EXISTS would be MOVED to the owner).
                streams_per_node.append(sum([len(await spy.keys(q.stream)) for q in queues]))
            finally:
                await spy.aclose()
        assert sum(streams_per_node) == 12 and sum(n > 0 for n in streams_per_node) >= 2, streams_per_node
    finally:
        for q in queues:
            await q.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0", "redis+cluster://127.0.0.1:{port}"],
                         ids=["single", "cluster"])
async def test_a_down_redis_is_store_unavailable_within_the_timeout(url):
    q = RedisJobQueue(url.format(port=free_port()), timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await q.enqueue([job(1)])
        with pytest.raises(StoreUnavailable):
            await q.read("w1", 10, 50)
    finally:
        await q.close()


async def test_a_pending_job_trimmed_away_by_maxlen_is_forgotten_not_claimed_forever(queue):
    await queue.enqueue([job(1), job(2)])
    first, second = await queue.read("dead-worker", 10, 50)
    await queue._redis.xdel(queue.stream, first.entry_id)     # what MAXLEN ~ does to the oldest entries
    await asyncio.sleep(VISIBILITY_S + 0.1)
    assert [e.job for e in await queue.claim_stale("w2", 10)] == [second.job]
    await queue.ack(second.entry_id)
    await asyncio.sleep(VISIBILITY_S + 0.1)
    assert await queue.claim_stale("w3", 10) == []
    assert (await queue._redis.xpending(queue.stream, "workers"))["pending"] == 0
