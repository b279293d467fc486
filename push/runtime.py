"""Builds the push parts from Settings: the queue a conversation host enqueues on, and a
whole worker for the PushWorker deployment (serve_app.py) or a test."""

from __future__ import annotations

from raychat.clock import Clock, SystemClock
from raychat.config import Settings

from .queue import RedisJobQueue
from .tally import OutcomeTally
from .worker import PushWorker, WorkerConfig


def build_queue(settings: Settings, prefix: str = "raychat:push:") -> RedisJobQueue:
    if not settings.redis_url:
        raise ValueError("push needs RAYCHAT_REDIS_URL")
    return RedisJobQueue(settings.redis_url, timeout_s=settings.store_timeout_ms / 1000, prefix=prefix,
                         visibility_timeout_s=settings.push_visibility_timeout_s,
                         maxlen=settings.push_stream_maxlen)


def build_worker(settings: Settings, consumer: str, clock: Clock | None = None) -> PushWorker:
    """A worker on the configured stores and providers. Connects lazily (nothing happens
    before the first step), so it may be built outside an event loop."""
    from storage.mongo import MongoStores
    from storage.redis_store import RedisPresence

    from .providers import build_providers

    if not settings.mongodb_uri:
        raise ValueError("push needs RAYCHAT_MONGODB_URI")
    clock = clock or SystemClock()
    s = settings
    stores = MongoStores(s.mongodb_uri, s.mongodb_db, write_concern=s.write_concern, journal=s.write_journal,
                         timeout_ms=s.store_timeout_ms)
    presence = RedisPresence(s.redis_url, timeout_s=s.store_timeout_ms / 1000)
    queue = build_queue(s)
    tally = OutcomeTally(s.redis_url, timeout_s=s.store_timeout_ms / 1000)
    return PushWorker(queue, stores.devices, presence, stores.users, build_providers(s, clock),
                      WorkerConfig.from_settings(s), clock, consumer, closing=(queue, presence, stores, tally),
                      tally=tally)
