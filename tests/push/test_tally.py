"""Push job outcomes counted cluster-wide in Redis (push/tally.py), on the session's real redis-server
and on its real Redis Cluster."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from push.tally import OutcomeTally
from push.worker import PushWorker, WorkerConfig
from raychat.clock import FakeClock
from storage.errors import StoreUnavailable
from storage.embedded import free_port


@pytest.fixture
async def tally(redis_uri):
    t = OutcomeTally(redis_uri, prefix=f"test:{uuid.uuid4().hex}:push:")
    yield t
    await t.close()


async def test_counts_from_several_workers_add_up(tally, redis_uri):
    other = OutcomeTally(redis_uri, prefix=tally.key.removesuffix("outcomes"))
    try:
        await tally.add({"delivered": 2, "dead": 1})
        await other.add({"delivered": 3, "collapsed": 4, "retried": 0})
        assert await tally.read() == {"delivered": 5, "dead": 1, "collapsed": 4}
    finally:
        await other.close()


async def test_an_unknown_outcome_is_refused(tally):
    with pytest.raises(ValueError):
        await tally.add({"delivred": 1})
    assert await tally.read() == {}


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0", "redis+cluster://127.0.0.1:{port}"],
                         ids=["single", "cluster"])
async def test_redis_down_is_store_unavailable(url):
    t = OutcomeTally(url.format(port=free_port()), timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await t.read()
    finally:
        await t.close()


async def test_a_worker_adds_only_what_it_settled_since_its_last_flush(tally):
    worker = PushWorker(None, None, None, None, {}, WorkerConfig(), FakeClock(), "w1", tally=tally)
    worker.stats.update({"delivered": 2, "dead_lettered": 1, "dropped_fcm_off": 1, "claimed": 9})
    await worker.flush_outcomes()
    worker.stats.update({"delivered": 1, "dropped_apns_off": 2})
    await worker.flush_outcomes()
    await worker.flush_outcomes()           # nothing new: nothing added
    assert await tally.read() == {"delivered": 3, "dead": 1, "dropped": 3}
    assert Counter(await tally.read()).total() == 7
