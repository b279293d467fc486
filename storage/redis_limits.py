"""RateLimiter on Redis: each decision is one Lua script, so it is atomic for every replica.

Keys (one per bucket or semaphore, so every script touches one key and runs on Redis Cluster):
    {prefix}{key}   a hash {tokens, at} for a token bucket: tokens left at time ``at`` (ms);
                    deleted when full, so an idle bucket costs nothing
                    a sorted set holder → lease end (ms) for a semaphore

Time is the Redis server's ``TIME`` unless a clock is injected (tests), so gateway replicas
with skewed clocks still agree. ``TIME`` makes a script non-deterministic: Redis before 7
must be told to replicate the script's effects, not the script (``replicate_commands``).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from redis.exceptions import NoScriptError

from storage.ports import Verdict
from storage.redis_store import connect, redis_errors

_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(ARGV[#ARGV])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: burst, tokens per ms, cost (negative gives back), now_ms or "".
# Returns {allowed, retry_after_ms, whole tokens left}.
_TAKE = _NOW + """
local burst, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
elseif now > at then            -- a clock that went back refills nothing
  tokens = tokens + (now - at) * rate
  at = now
end
tokens = math.min(burst, tokens)
if cost > 0 and tokens < cost then
  return {0, math.max(1, math.ceil((cost - tokens) / rate)), math.floor(tokens)}
end
tokens = math.min(burst, tokens - cost)
if tokens >= burst then
  redis.call('DEL', KEYS[1])    -- a full bucket and no bucket are the same
else
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', at))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((burst - tokens) / rate) + 1000))
end
return {1, 0, math.floor(tokens)}
"""

# ARGV: holder, limit, lease_ms, now_ms or "". Returns {allowed, retry_after_ms, free slots left}.
_HOLD = _NOW + """
local holder, limit, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if not redis.call('ZSCORE', KEYS[1], holder) then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= limit then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, math.max(1, tonumber(first[2]) - now), 0}
  end
end
redis.call('ZADD', KEYS[1], string.format('%d', now + lease), holder)
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], string.format('%d', lease))
end
return {1, 0, limit - redis.call('ZCARD', KEYS[1])}
"""

# ARGV: holder, lease_ms, now_ms or "". Renews a slot that has not lapsed.
_RENEW = _NOW + """
local holder, lease = ARGV[1], tonumber(ARGV[2])
local ends = tonumber(redis.call('ZSCORE', KEYS[1], holder))
if ends and ends > now then
  redis.call('ZADD', KEYS[1], string.format('%d', now + lease), holder)
  if redis.call('PTTL', KEYS[1]) < lease then
    redis.call('PEXPIRE', KEYS[1], string.format('%d', lease))
  end
end
return 0
"""


class RedisLimits:
    """The RateLimiter port on Redis.

    Like RedisPresence, the client retries a command once after a dropped connection. For
    ``take`` that may, rarely, charge twice for one call: it errs on the strict side.
    """

    def __init__(self, url: str, *, timeout_s: float = 3.0, prefix: str = "raychat:rl:",
                 clock: Callable[[], float] | None = None):
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._clock = clock
        self._redis = connect(url, timeout_s)
        self._take = self._redis.register_script(_TAKE)
        self._hold = self._redis.register_script(_HOLD)
        self._renew = self._redis.register_script(_RENEW)

    def _now(self) -> str:
        # "" makes the script read the server's clock; ``clock`` (seconds since the epoch)
        # is for tests that move time by hand.
        return "" if self._clock is None else str(int(self._clock() * 1000))

    async def take(self, key: str, burst: int, per_s: float, cost: int = 1) -> Verdict:
        if not 1 <= cost <= burst:
            raise ValueError(f"cost must be 1..burst ({burst}), got {cost}")
        return await self._bucket(key, burst, per_s, cost)

    async def give_back(self, key: str, burst: int, per_s: float, amount: int = 1) -> None:
        if amount < 1:
            raise ValueError(f"amount must be at least 1, got {amount}")
        await self._bucket(key, burst, per_s, -amount)

    async def _bucket(self, key: str, burst: int, per_s: float, cost: int) -> Verdict:
        if burst < 1 or not per_s > 0 or not math.isfinite(per_s):
            raise ValueError(f"a bucket needs burst >= 1 and a finite per_s > 0, got {burst}, {per_s}")
        async with redis_errors(self._timeout_s):
            allowed, retry, left = await self._take(
                keys=[self._prefix + key], args=[burst, repr(per_s / 1000), cost, self._now()])
        return Verdict(bool(allowed), int(retry), int(left))

    async def hold(self, key: str, holder: str, limit: int, lease_s: float) -> Verdict:
        if limit < 1 or not lease_s > 0:
            raise ValueError(f"a semaphore needs limit >= 1 and lease_s > 0, got {limit}, {lease_s}")
        async with redis_errors(self._timeout_s):
            allowed, retry, left = await self._hold(
                keys=[self._prefix + key], args=[holder, limit, _ms(lease_s), self._now()])
        return Verdict(bool(allowed), int(retry), int(left))

    async def renew(self, slots: Sequence[tuple[str, str]], lease_s: float) -> None:
        if not slots:
            return
        async with redis_errors(self._timeout_s):
            # One script call per slot (each touches one key), all in one round trip (one per node
            # on a cluster). EVALSHA is queued as a raw command: redis-py's cluster pipeline refuses
            # its evalsha() method (as it does mget(), which its own mget_nonatomic queues the same
            # way), and awaiting a Script on it starts the pipeline afresh, dropping what was queued.
            for attempt in (1, 2):
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for key, holder in slots:
                            pipe.execute_command("EVALSHA", self._renew.sha, 1, self._prefix + key,
                                                 holder, _ms(lease_s), self._now())
                        await pipe.execute()
                    return
                except NoScriptError:
                    if attempt == 2:
                        raise
                    # A server (or cluster node) that never ran it, or restarted: SCRIPT LOAD goes
                    # to every primary. Renewing twice is harmless.
                    await self._redis.script_load(_RENEW)

    async def release(self, key: str, holder: str) -> None:
        async with redis_errors(self._timeout_s):
            await self._redis.zrem(self._prefix + key, holder)

    async def close(self) -> None:
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
