"""RateLimiter contract: every adapter subclasses RateLimiterContract with ``limiter`` and ``clock``
fixtures; ``clock`` is the FakeClock the limiter reads, so refill and leases need no sleeping.
One test per adapter checks its own clock (the Redis server's) for real.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from raychat.clock import FakeClock
from storage.errors import StoreUnavailable
from storage.embedded import free_port, start_redis
from storage.ports import RateLimiter
from storage.redis_limits import RedisLimits
from storage.redis_store import connect
from tests.storage.memory_limits import MemoryLimits

# 10 per 15 minutes, as for login attempts: one token every 90 s.
BURST, PER_S = 10, 10 / 900


class RateLimiterContract:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def limiter(self, clock) -> RateLimiter:
        raise NotImplementedError

    async def take_all(self, limiter, key, n=BURST):
        return [await limiter.take(key, BURST, PER_S) for _ in range(n)]

    # ---- token bucket ----------------------------------------------------------------------
    async def test_a_new_bucket_allows_burst_then_refuses(self, limiter):
        verdicts = await self.take_all(limiter, "k", BURST + 1)
        assert [v.allowed for v in verdicts] == [True] * BURST + [False]
        assert [v.remaining for v in verdicts[:BURST]] == list(range(BURST - 1, -1, -1))

    async def test_refusal_says_when_the_next_token_comes(self, limiter):
        await self.take_all(limiter, "k")
        v = await limiter.take("k", BURST, PER_S)
        assert not v.allowed and v.retry_after_ms == 90_000

    async def test_retry_after_is_exactly_when_the_call_succeeds(self, limiter, clock):
        await self.take_all(limiter, "k")
        wait_ms = (await limiter.take("k", BURST, PER_S)).retry_after_ms
        clock.advance(wait_ms / 1000 - 0.01)
        assert not (await limiter.take("k", BURST, PER_S)).allowed
        clock.advance(0.01)
        assert (await limiter.take("k", BURST, PER_S)).allowed

    async def test_a_refusal_spends_nothing(self, limiter, clock):
        await self.take_all(limiter, "k")
        for _ in range(5):
            await limiter.take("k", BURST, PER_S)
        clock.advance(90)
        assert (await limiter.take("k", BURST, PER_S)).allowed

    async def test_the_bucket_refills_fully_after_the_period_and_no_further(self, limiter, clock):
        await self.take_all(limiter, "k")
        clock.advance(10 * 900)
        verdicts = await self.take_all(limiter, "k", BURST + 1)
        assert [v.allowed for v in verdicts] == [True] * BURST + [False]

    async def test_keys_are_independent(self, limiter):
        await self.take_all(limiter, "a")
        assert not (await limiter.take("a", BURST, PER_S)).allowed
        assert (await limiter.take("b", BURST, PER_S)).allowed

    async def test_a_cost_takes_that_many_tokens_or_none(self, limiter):
        assert (await limiter.take("k", BURST, PER_S, cost=7)).remaining == 3
        v = await limiter.take("k", BURST, PER_S, cost=4)
        assert not v.allowed and v.retry_after_ms == 90_000
        assert (await limiter.take("k", BURST, PER_S, cost=3)).allowed

    @pytest.mark.parametrize("cost", [0, -1, BURST + 1])
    async def test_a_cost_outside_one_to_burst_is_a_value_error(self, limiter, cost):
        with pytest.raises(ValueError):
            await limiter.take("k", BURST, PER_S, cost=cost)

    async def test_give_back_returns_a_token(self, limiter):
        await self.take_all(limiter, "k")
        await limiter.give_back("k", BURST, PER_S)
        assert (await limiter.take("k", BURST, PER_S)).allowed
        assert not (await limiter.take("k", BURST, PER_S)).allowed

    async def test_give_back_never_fills_above_burst(self, limiter):
        await limiter.give_back("k", BURST, PER_S, amount=5)
        verdicts = await self.take_all(limiter, "k", BURST + 1)
        assert [v.allowed for v in verdicts] == [True] * BURST + [False]

    async def test_a_clock_that_goes_back_refills_nothing(self, limiter, clock):
        await self.take_all(limiter, "k")
        clock.advance(-3600)
        assert not (await limiter.take("k", BURST, PER_S)).allowed

    async def test_fifty_concurrent_takers_get_exactly_the_burst(self, limiter):
        verdicts = await asyncio.gather(*(limiter.take("k", BURST, PER_S) for _ in range(50)))
        assert sum(v.allowed for v in verdicts) == BURST

    # ---- semaphore -------------------------------------------------------------------------
    async def test_limit_holders_get_a_slot_and_the_next_is_refused(self, limiter):
        verdicts = [await limiter.hold("s", f"h{n}", 3, 60) for n in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
        assert 0 < verdicts[3].retry_after_ms <= 60_000

    async def test_holding_again_is_allowed_and_takes_no_second_slot(self, limiter):
        await limiter.hold("s", "a", 2, 60)
        assert (await limiter.hold("s", "a", 2, 60)).allowed
        assert (await limiter.hold("s", "b", 2, 60)).allowed

    async def test_release_frees_the_slot(self, limiter):
        await limiter.hold("s", "a", 1, 60)
        await limiter.release("s", "a")
        await limiter.release("s", "a")
        assert (await limiter.hold("s", "b", 1, 60)).allowed

    async def test_a_lease_lapses_by_itself(self, limiter, clock):
        await limiter.hold("s", "crashed", 1, 60)
        clock.advance(59)
        assert not (await limiter.hold("s", "b", 1, 60)).allowed
        clock.advance(1)
        assert (await limiter.hold("s", "b", 1, 60)).allowed

    async def test_renew_keeps_a_live_slot_past_its_first_lease(self, limiter, clock):
        await limiter.hold("s", "a", 1, 60)
        clock.advance(50)
        await limiter.renew([("s", "a")], 60)
        clock.advance(50)
        assert not (await limiter.hold("s", "b", 1, 60)).allowed

    async def test_renewing_many_slots_at_once_keeps_every_one(self, limiter, clock):
        keys = [f"s{n}" for n in range(12)]       # on a cluster: slots on every node
        for key in keys:
            await limiter.hold(key, "a", 1, 60)
        clock.advance(50)
        await limiter.renew([(key, "a") for key in keys], 60)
        clock.advance(50)
        assert [(await limiter.hold(key, "b", 1, 60)).allowed for key in keys] == [False] * len(keys)

    async def test_renew_does_not_bring_back_a_lapsed_or_released_slot(self, limiter, clock):
        await limiter.hold("s", "lapsed", 2, 60)
        await limiter.hold("s", "released", 2, 60)
        await limiter.release("s", "released")
        clock.advance(61)
        await limiter.renew([("s", "lapsed"), ("s", "released"), ("other", "never")], 60)
        assert (await limiter.hold("s", "b", 2, 60)).allowed
        assert (await limiter.hold("s", "c", 2, 60)).allowed

    async def test_renew_of_nothing_is_a_no_op(self, limiter):
        await limiter.renew([], 60)

    async def test_fifty_concurrent_holders_get_exactly_the_limit(self, limiter):
        verdicts = await asyncio.gather(*(limiter.hold("s", f"h{n}", 20, 60) for n in range(50)))
        assert sum(v.allowed for v in verdicts) == 20


class TestMemoryLimits(RateLimiterContract):
    """The fake that tests/gateway/test_limits.py runs the policy on."""

    @pytest.fixture
    def limiter(self, clock):
        return MemoryLimits(clock.now)


class TestRedisLimits(RateLimiterContract):
    @pytest.fixture
    def url(self, redis_server):
        return redis_server.uri

    @pytest.fixture
    async def limiter(self, url, clock):
        limits = RedisLimits(url, prefix=f"test:{uuid.uuid4().hex}:", clock=clock.now)
        yield limits
        await limits.close()

    @pytest.fixture
    async def server_clock_limiter(self, url):
        limits = RedisLimits(url, prefix=f"test:{uuid.uuid4().hex}:")
        yield limits
        await limits.close()

    async def test_without_a_clock_the_server_time_refills(self, server_clock_limiter):
        """Two tokens a second: the refusal names about 500 ms, and after it a token is back."""
        lim = server_clock_limiter
        assert (await lim.take("k", 1, 2.0)).allowed
        v = await lim.take("k", 1, 2.0)
        assert not v.allowed and 400 <= v.retry_after_ms <= 500
        await asyncio.sleep(v.retry_after_ms / 1000 + 0.05)
        assert (await lim.take("k", 1, 2.0)).allowed

    async def test_without_a_clock_a_lease_lapses_on_server_time(self, server_clock_limiter):
        lim = server_clock_limiter
        assert (await lim.hold("s", "a", 1, 0.3)).allowed
        assert not (await lim.hold("s", "b", 1, 0.3)).allowed
        await asyncio.sleep(0.35)
        assert (await lim.hold("s", "b", 1, 0.3)).allowed

    async def test_a_full_bucket_leaves_no_key_behind(self, limiter, url):
        await limiter.take("k", BURST, PER_S)
        await limiter.give_back("k", BURST, PER_S)
        spy = connect(url, 3.0)          # on a cluster, KEYS asks every primary
        try:
            assert await spy.keys(limiter._prefix + "*") == []
        finally:
            await spy.aclose()


class TestRedisClusterLimits(TestRedisLimits):
    @pytest.fixture
    def url(self, redis_cluster):
        return redis_cluster.uri

    async def test_buckets_and_semaphores_spread_over_every_node(self, limiter, redis_cluster):
        """Each script touches one key, any slot: the limits of many users land on every master."""
        for n in range(30):
            await limiter.take(f"msg:u{n}", BURST, PER_S)
            await limiter.hold(f"ws:u{n}", "a", 2, 60)
        per_node = []
        for node in redis_cluster.nodes:
            spy = connect(node.uri, 3.0)
            try:
                per_node.append(len(await spy.keys(limiter._prefix + "*")))
            finally:
                await spy.aclose()
        assert sum(per_node) == 60 and all(n > 0 for n in per_node), per_node


async def test_every_call_fails_fast_when_no_cluster_node_answers():
    lim = RedisLimits(f"redis+cluster://127.0.0.1:{free_port()}", timeout_s=0.5)
    try:
        for call in (lim.take("k", 1, 1.0), lim.hold("s", "a", 1, 1.0), lim.renew([("s", "a")], 1.0),
                     lim.release("s", "a")):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < 2.0
    finally:
        await lim.close()


async def test_every_call_fails_fast_when_redis_is_down():
    server = start_redis()
    server.stop()
    lim = RedisLimits(server.uri, timeout_s=0.5)
    try:
        for call in (lim.take("k", 1, 1.0), lim.give_back("k", 1, 1.0), lim.hold("s", "a", 1, 1.0),
                     lim.renew([("s", "a")], 1.0), lim.release("s", "a")):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < 2.0
    finally:
        await lim.close()
