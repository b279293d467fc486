"""PresenceStore on Redis.

Two keys per user:
    {prefix}online:{user_id}  "1" with a TTL: online while it exists, so a dead host's
                              users go offline by themselves
    {prefix}seen:{user_id}    last_seen as ISO 8601 UTC, no TTL: survives the mark

last_seen is what the last ``set_offline`` recorded; a user whose mark merely expired
keeps the last_seen of their previous clean sign-off (or None).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ConnectionError as RedisConnectionError,
    ReadOnlyError,
    RedisError,
    TimeoutError as RedisTimeoutError,
)

from storage.errors import StoreRejected, StoreUnavailable, counted


class RedisPresence:
    def __init__(self, url: str, *, timeout_s: float = 3.0, prefix: str = "raychat:"):
        self._timeout_s = timeout_s
        self._prefix = prefix
        # Every command here is idempotent, so connect()'s one retry is safe.
        self._redis = connect(url, timeout_s)

    def _online(self, user_id: str) -> str:
        return f"{self._prefix}online:{user_id}"

    def _seen(self, user_id: str) -> str:
        return f"{self._prefix}seen:{user_id}"

    async def set_online(self, user_id: str, ttl_s: int) -> None:
        async with self._errors():
            await self._redis.set(self._online(user_id), "1", ex=ttl_s)

    async def refresh(self, user_ids: Sequence[str], ttl_s: int) -> list[str]:
        if not user_ids:
            return []
        async with self._errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    # XX: only a mark that still exists is extended; an expired or
                    # cleared user stays offline.
                    pipe.set(self._online(user_id), "1", ex=ttl_s, xx=True)
                extended = await pipe.execute()
        return [u for u, ok in zip(user_ids, extended) if not ok]

    async def set_offline(self, user_id: str, last_seen: datetime) -> None:
        async with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._online(user_id))
                pipe.set(self._seen(user_id), _encode(last_seen))
                await pipe.execute()

    async def get(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not user_ids:
            return {}
        ids = list(user_ids)
        async with self._errors():
            # One MGET over both key families: one round trip, however many users.
            values = await self._redis.mget([self._online(u) for u in ids] + [self._seen(u) for u in ids])
        online, seen = values[: len(ids)], values[len(ids):]
        return {
            user_id: {
                "status": "online" if mark is not None else "offline",
                "last_seen": _decode(stamp) if stamp is not None else None,
            }
            for user_id, mark, stamp in zip(ids, online, seen)
        }

    async def ping(self) -> None:
        async with self._errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    def _errors(self):
        return redis_errors(self._timeout_s)


POOL_CONNECTIONS = 100          # redis-py's default pool size, per process


def connect(url: str, timeout_s: float) -> Redis:
    """A client whose commands each take at most ``timeout_s``, with one immediate retry.

    After a Redis restart the first command on each pooled connection fails at once, and a
    fresh connection succeeds; the retry covers that. (redis-py's default retries 3 times
    with backoff, which would blow well past timeout_s.) Nothing connects before the first
    command, so this may be built outside an event loop.
    """
    # A blocking pool: a burst of more commands than connections (200 sockets closing at once
    # each mark a user offline) waits for a free connection, within timeout_s, instead of
    # failing at once with "Too many connections" (redis-py's default pool), which left those
    # users shown online until their presence expired.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True        # aclose() closes the pool it owns, as from_url's does
    return client


@asynccontextmanager
async def redis_errors(timeout_s: float) -> AsyncIterator[None]:
    """Translate redis errors and hold the whole call to timeout_s, retry included."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except AuthenticationError as exc:      # a ConnectionError subclass, but no outage
        raise counted("redis", StoreRejected(f"redis refused our credentials: {exc}")) from exc
    except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, TimeoutError, OSError) as exc:
        raise counted("redis", StoreUnavailable(str(exc) or "redis did not answer in time")) from exc
    except RedisError as exc:
        raise counted("redis", StoreRejected(str(exc))) from exc


def _encode(at: datetime) -> str:
    # A naive datetime is taken as UTC, as pymongo does.
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat()


def _decode(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).astimezone(timezone.utc)
