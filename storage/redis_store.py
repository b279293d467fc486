"""PresenceStore on Redis, and the client every Redis adapter shares (``connect``).

Two keys per user:
    {prefix}online:{user_id}  "1" with a TTL: online while it exists, so a dead host's
                              users go offline by themselves
    {prefix}seen:{user_id}    last_seen as ISO 8601 UTC, no TTL: survives the mark

On Redis Cluster the user id, in braces, is the keys' hash tag (``raychat:online:{u_1}``,
``raychat:seen:{u_1}``), so ``set_offline``'s script changes both keys of a user in one slot,
and users spread over every node.

last_seen is what the last ``set_offline`` recorded; a user whose mark merely expired
keeps the last_seen of their previous clean sign-off (or None).

A URL ``redis://`` or ``rediss://`` names one server; ``redis+cluster://`` or
``rediss+cluster://`` names any node of a Redis Cluster, from which the client learns the
others. Cluster mode only changes what the cluster needs: key names where a script touches
several keys, and reads across slots split per slot.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    ConnectionError as RedisConnectionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

from storage.errors import StoreRejected, StoreUnavailable, counted


# KEYS: online mark, last seen. ARGV: last seen. One script, so both change together.
_OFFLINE = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return 0
"""


class RedisPresence:
    def __init__(self, url: str, *, timeout_s: float = 3.0, prefix: str = "raychat:"):
        self._timeout_s = timeout_s
        self._prefix = prefix
        # Every command here is idempotent, so connect()'s one retry is safe.
        self._redis = connect(url, timeout_s)
        self._cluster = is_cluster(self._redis)
        if self._cluster:
            check_prefix(prefix)
        self._offline = self._redis.register_script(_OFFLINE)

    def _online(self, user_id: str) -> str:
        return f"{self._prefix}online:{{{user_id}}}" if self._cluster else f"{self._prefix}online:{user_id}"

    def _seen(self, user_id: str) -> str:
        return f"{self._prefix}seen:{{{user_id}}}" if self._cluster else f"{self._prefix}seen:{user_id}"

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
            await self._offline(keys=[self._online(user_id), self._seen(user_id)], args=[_encode(last_seen)])

    async def get(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not user_ids:
            return {}
        ids = list(user_ids)
        keys = [self._online(u) for u in ids] + [self._seen(u) for u in ids]
        async with self._errors():
            if self._cluster:
                # An MGET per slot (a user's two keys share one), pipelined: one round trip per node.
                values = await self._redis.mget_nonatomic(keys)
            else:
                # One MGET over both key families: one round trip, however many users.
                values = await self._redis.mget(keys)
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


POOL_CONNECTIONS = 100          # redis-py's default pool size, per process (per node on a cluster)

_SCHEMES = {"redis": False, "rediss": False, "unix": False, "redis+cluster": True, "rediss+cluster": True}


def parse_url(url: str) -> tuple[bool, str]:
    """``(cluster, url for redis-py)`` of a RAYCHAT_REDIS_URL; ValueError says what is wrong.

    ``redis+cluster://[user:password@]host:port`` (``rediss+cluster`` with TLS) names any node
    of a Redis Cluster, e.g. ElastiCache's configuration endpoint; the other nodes are learnt
    from it.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"{parts.scheme + '://' if parts.scheme else url[:20]!r} is not a Redis URL scheme: "
                         "use redis://, rediss:// or unix:// for one server, redis+cluster:// or "
                         "rediss+cluster:// for a Redis Cluster")
    if not _SCHEMES[scheme]:
        return False, url
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise ValueError("a Redis Cluster URL names one node as host:port, e.g. "
                         "redis+cluster://:password@clustercfg.example.com:6379")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {parts.path.lstrip('/')!r}: "
                         "end the URL at host:port")
    return True, urlunsplit((scheme.removesuffix("+cluster"), parts.netloc, "", parts.query, ""))


def is_cluster(client: Redis | RedisCluster) -> bool:
    return isinstance(client, RedisCluster)


def check_prefix(prefix: str) -> None:
    """A key prefix on a cluster may hold no brace: it would be, or break, the keys' hash tag."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"a Redis Cluster key prefix may not contain braces, got {prefix!r}")


def connect(url: str, timeout_s: float) -> Redis | RedisCluster:
    """A client whose commands each take at most ``timeout_s``, with one immediate retry.

    After a Redis restart the first command on each pooled connection fails at once, and a
    fresh connection succeeds; the retry covers that. (redis-py's default retries 3 times
    with backoff, which would blow well past timeout_s.) Nothing connects before the first
    command, so this may be built outside an event loop.

    A cluster URL (``parse_url``) gives a RedisCluster: the same timeouts and retry (after
    which it learns the slots anew), a pool of POOL_CONNECTIONS per node.
    """
    cluster, url = parse_url(url)
    if cluster:
        return _GatedCluster.from_url(
            url,
            max_connections=POOL_CONNECTIONS,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
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


# Set while a task holds a slot of _GatedCluster's gate, so that what redis-py runs inside a
# gated call (a pipeline resending a redirected command) does not wait for a second slot.
_GATED: ContextVar[bool] = ContextVar("raychat_redis_gated", default=False)


class _GatedCluster(RedisCluster):
    """A RedisCluster whose calls wait for a free connection, as BlockingConnectionPool's do.

    RedisCluster's per-node pool fails at once with MaxConnectionsError when it is exhausted: a
    burst (200 sockets closing at once, each marking a user offline) would leave users shown
    online. Here at most POOL_CONNECTIONS commands or pipelines of one client run at a time,
    each holding at most one connection per node; the rest wait, within the caller's timeout.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(POOL_CONNECTIONS)

    @asynccontextmanager
    async def gated(self) -> AsyncIterator[None]:
        if _GATED.get():
            yield
            return
        async with self._gate:
            token = _GATED.set(True)
            try:
                yield
            finally:
                _GATED.reset(token)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gated():
            if self._initialize:
                # redis-py picks a command's node before it learns the slots, so on a fresh client
                # (or after it dropped them) concurrent commands go to any node and are MOVED, and
                # every 5th MOVED closes all its connections under the commands still in flight.
                await self.initialize()
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        # redis-py's cluster transactions run each queued command on a thread of their own,
        # blocking the event loop: raychat's atomic steps are Lua scripts instead.
        if transaction or shard_hint:
            raise ValueError("raychat uses no cluster transactions (a Lua script is atomic)")
        return _GatedPipeline(self)


class _GatedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        async with self.cluster_client.gated():
            return await super().execute(raise_on_error, allow_redirections)


# Cluster errors whose message says the client could not learn the cluster's layout (every
# node it knows is down, or the nodes disagree): an outage. Other RedisClusterExceptions are
# raychat's mistakes (keys of several slots in one command), like a rejected command.
_LAYOUT_UNKNOWN = ("cannot be connected", "are not covered", "could not agree")


@asynccontextmanager
async def redis_errors(timeout_s: float) -> AsyncIterator[None]:
    """Translate redis errors and hold the whole call to timeout_s, retry included.

    On a cluster, CLUSTERDOWN, TRYAGAIN past redis-py's redirects, a slot no node serves and a
    cluster that cannot be reached are outages too; MOVED and ASK never get here (the client
    follows them).
    """
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except AuthenticationError as exc:      # a ConnectionError subclass, but no outage
        raise counted("redis", StoreRejected(f"redis refused our credentials: {exc}")) from exc
    except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, TimeoutError, OSError,
            ClusterError, TryAgainError, SlotNotCoveredError) as exc:   # ClusterError: CLUSTERDOWN…
        raise counted("redis", StoreUnavailable(str(exc) or "redis did not answer in time")) from exc
    except RedisError as exc:
        raise counted("redis", StoreRejected(str(exc))) from exc
    except RedisClusterException as exc:    # not a RedisError
        if "Cluster mode is not enabled" in str(exc):
            raise counted("redis", StoreRejected(f"a Redis Cluster URL names a server not in cluster mode: use "
                                                 f"redis:// or rediss:// for it ({exc})")) from exc
        if any(words in str(exc) for words in _LAYOUT_UNKNOWN):
            raise counted("redis", StoreUnavailable(str(exc))) from exc
        raise counted("redis", StoreRejected(str(exc))) from exc


def _encode(at: datetime) -> str:
    # A naive datetime is taken as UTC, as pymongo does.
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat()


def _decode(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).astimezone(timezone.utc)
