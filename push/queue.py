"""JobQueue on Redis Streams (redis.asyncio): at-least-once through a consumer group.

    {prefix}jobs                   the stream; consumer group ``workers`` reads it
    {prefix}retry                  ZSET: a job's next attempt, scored by its due time (ms)
    {prefix}dead                   the dead-letter stream: {job, reason}
    {prefix}collapse:{device}:{cid}  the message job that pushed there last, expiring after the window

On Redis Cluster the prefix becomes every key's hash tag, ``raychat:push:`` -> ``{raychat:push}:``
(``{raychat:push}:jobs``…), so the scripts below, which touch several of them, run in one slot.
The queue is one stream, so one node holds it either way.

A settled job is acknowledged *and deleted* (XACK + XDEL), so the stream holds only work not yet
done and MAXLEN ~ push_stream_maxlen is a last-resort bound, not the normal trim. Every
settlement (ack, expand, retry_later, dead_letter) is one Lua script: a worker dying half-way
leaves the job pending, never both pending and re-enqueued. Moving due retries back onto the
stream is one Lua script, so a retry is never both in the ZSET and on the stream.

Times: due times are the worker's (injected) wall clock; the visibility timeout and the collapse
window are Redis's own clock (XAUTOCLAIM idle time, PX), shared by every worker.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from redis.exceptions import ResponseError

from storage.errors import StoreRejected
from storage.redis_store import check_prefix, connect, is_cluster, redis_errors

from .ports import Entry

GROUP = "workers"

_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job', job)
  redis.call('ZREM', KEYS[1], job)
end
return #due
"""

# KEYS: stream, retries, dead. ARGV: entry id, maxlen, then what to do besides acknowledging:
# "ack"; "expand", job…; "retry", due ms, job; "dead", job, reason.
_SETTLE = """
local stream, id, maxlen, what = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if what == 'expand' then
  for i = 4, #ARGV do
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'job', ARGV[i])
  end
elseif what == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
elseif what == 'dead' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'job', ARGV[4], 'reason', ARGV[5])
end
redis.call('XACK', stream, '""" + GROUP + """', id)
redis.call('XDEL', stream, id)
return 0
"""

_COLLAPSE = """
local out = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if not holder then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  elseif holder == ARGV[1] then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


class RedisJobQueue:
    def __init__(self, url: str, *, timeout_s: float = 3.0, prefix: str = "raychat:push:",
                 visibility_timeout_s: float = 60.0, maxlen: int = 1_000_000):
        self._timeout_s = timeout_s
        self._redis = connect(url, timeout_s)
        if is_cluster(self._redis):
            check_prefix(prefix)
            prefix = f"{{{prefix.rstrip(':')}}}:"
        self.stream = f"{prefix}jobs"
        self.dead = f"{prefix}dead"
        self.retries = f"{prefix}retry"
        self._collapse_prefix = f"{prefix}collapse:"
        self._visibility_ms = int(visibility_timeout_s * 1000)
        self._maxlen = maxlen
        self._promote = self._redis.register_script(_PROMOTE)
        self._settle_script = self._redis.register_script(_SETTLE)
        self._collapse = self._redis.register_script(_COLLAPSE)
        self._group_ready = False
        self._claim_from = "0-0"

    # ---- producing -----------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[dict[str, Any]]) -> None:
        if not jobs:
            return
        async with redis_errors(self._timeout_s):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job in jobs:
                    self._xadd(pipe, self.stream, {"job": _dumps(job)})
                await pipe.execute()

    def _xadd(self, pipe: Any, stream: str, fields: dict[str, str]) -> None:
        pipe.xadd(stream, fields, maxlen=self._maxlen, approximate=True)

    # ---- consuming -----------------------------------------------------------------------
    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        # The whole call, block included, must fit the client's socket timeout.
        block_ms = max(1, min(block_ms, int(self._timeout_s * 500)))
        reply = await self._grouped(lambda: self._redis.xreadgroup(
            GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms))
        entries = reply[0][1] if reply else []
        return [_entry(eid, fields) for eid, fields in entries if fields is not None]

    async def claim_stale(self, consumer: str, count: int) -> list[Entry]:
        reply = await self._grouped(lambda: self._redis.xautoclaim(
            self.stream, GROUP, consumer, self._visibility_ms, start_id=self._claim_from, count=count))
        # The PEL is scanned a page at a time; the cursor wraps to 0-0 after the last page.
        self._claim_from = reply[0] or "0-0"
        out = [_entry(eid, fields) for eid, fields in reply[1] if fields is not None]
        if len(out) < len(reply[1]):
            await self._drop_trimmed(consumer)
        return out

    async def _drop_trimmed(self, consumer: str) -> None:
        """Forget pending jobs that MAXLEN trimmed away (nothing is left to do for them). Redis 6.2
        keeps them pending and answers them to XAUTOCLAIM as bare nils, without their ids: look
        the ids up among this consumer's pending ones, and acknowledge those no longer stored."""
        async with redis_errors(self._timeout_s):
            pending = await self._redis.xpending_range(self.stream, GROUP, "-", "+", 1000, consumername=consumer)
            ids = [p["message_id"] for p in pending]
            async with self._redis.pipeline(transaction=False) as pipe:
                for eid in ids:
                    pipe.xrange(self.stream, eid, eid)
                found = await pipe.execute()
            gone = [eid for eid, entries in zip(ids, found) if not entries]
            if gone:
                await self._redis.xack(self.stream, GROUP, *gone)

    async def _grouped(self, command):
        """Run a group command, creating the group first if it does not exist (first start, or
        Redis lost its data meanwhile)."""
        if not self._group_ready:
            await self._create_group()
        try:
            async with redis_errors(self._timeout_s):
                return await command()
        except StoreRejected as exc:
            if "NOGROUP" not in str(exc):
                raise
        await self._create_group()
        async with redis_errors(self._timeout_s):
            return await command()

    async def _create_group(self) -> None:
        async with redis_errors(self._timeout_s):
            try:
                # From the start of the stream ("0"): jobs enqueued before any worker existed count.
                await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    # ---- settling ------------------------------------------------------------------------
    async def ack(self, entry_id: str) -> None:
        await self._settle(entry_id, "ack")

    async def expand(self, entry_id: str, jobs: Sequence[dict[str, Any]]) -> None:
        await self._settle(entry_id, "expand", *(_dumps(job) for job in jobs))

    async def retry_later(self, entry_id: str, job: dict[str, Any], due: float) -> None:
        await self._settle(entry_id, "retry", int(due * 1000), _dumps(job))

    async def dead_letter(self, entry_id: str, job: dict[str, Any], reason: str) -> None:
        await self._settle(entry_id, "dead", _dumps(job), reason[:500])

    async def _settle(self, entry_id: str, what: str, *data: Any) -> None:
        async with redis_errors(self._timeout_s):
            await self._settle_script(keys=[self.stream, self.retries, self.dead],
                                      args=[entry_id, self._maxlen, what, *data])

    async def promote_due(self, now: float, count: int) -> int:
        async with redis_errors(self._timeout_s):
            return int(await self._promote(keys=[self.retries, self.stream],
                                           args=[int(now * 1000), count, self._maxlen]))

    async def collapse(self, pairs: Sequence[tuple[str, str]], owner: str, window_s: float) -> list[bool]:
        if not pairs:
            return []
        if window_s <= 0:
            return [True] * len(pairs)
        keys = [f"{self._collapse_prefix}{device}:{cid}" for device, cid in pairs]
        async with redis_errors(self._timeout_s):
            got = await self._collapse(keys=keys, args=[owner, max(1, int(window_s * 1000))])
        return [bool(x) for x in got]

    # ---- inspection (operators and tests) --------------------------------------------------
    async def depth(self) -> dict[str, int]:
        """Jobs on the stream (waiting or pending), retries scheduled, dead letters."""
        async with redis_errors(self._timeout_s):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.stream)
                pipe.zcard(self.retries)
                pipe.xlen(self.dead)
                stream, retries, dead = await pipe.execute()
        return {"stream": stream, "retries": retries, "dead": dead}

    async def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        async with redis_errors(self._timeout_s):
            entries = await self._redis.xrange(self.dead, count=count)
        return [{"job": json.loads(f["job"]), "reason": f.get("reason", "")} for _, f in entries]

    async def ping(self) -> None:
        async with redis_errors(self._timeout_s):
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _dumps(job: dict[str, Any]) -> str:
    return json.dumps(job, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _entry(entry_id: str, fields: dict[str, str]) -> Entry:
    try:
        job = json.loads(fields["job"])
        if not isinstance(job, dict):
            raise ValueError("not an object")
    except (KeyError, ValueError) as exc:
        # Not ours (or corrupted): the worker dead-letters it instead of failing on it forever.
        job = {"type": "unreadable", "raw": str(fields)[:1000], "error": str(exc)}
    return Entry(entry_id, job)
