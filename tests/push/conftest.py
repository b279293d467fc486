"""Fixtures of the push tests: a job queue on the session's real redis-server, under its own keys."""

from __future__ import annotations

import uuid

import pytest

from push.queue import RedisJobQueue

VISIBILITY_S = 0.3


@pytest.fixture
async def queue(redis_server):
    q = RedisJobQueue(redis_server.uri, prefix=f"test:{uuid.uuid4().hex}:push:", visibility_timeout_s=VISIBILITY_S,
                      maxlen=10_000)
    yield q
    await q.close()
