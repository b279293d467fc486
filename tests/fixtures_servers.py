"""Real database servers for the tests: one of each per session, a fresh namespace per test.

Registered from tests/conftest.py as a pytest plugin.
"""

from __future__ import annotations

import uuid
from typing import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient

from storage.embedded import EmbeddedServer, start_mongo, start_redis
from storage.mongo import MongoStores
from storage.redis_store import RedisPresence


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """SecantusDB in memory, with mongod's test commands (configureFailPoint) on."""
    server = start_mongo(":memory:", test_commands=True,
                         log_path=tmp_path_factory.mktemp("mongo") / "mongo.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = start_redis(log_path=tmp_path_factory.mktemp("redis") / "redis.log")
    yield server
    server.stop()


@pytest.fixture
async def mongo_stores(mongo_server: EmbeddedServer) -> AsyncIterator[MongoStores]:
    """MongoStores on a database of its own, indexes in place."""
    stores = MongoStores(mongo_server.uri, f"test_{uuid.uuid4().hex}")
    await stores.ensure_indexes()
    yield stores
    await stores.close()


@pytest.fixture
async def presence(redis_server: EmbeddedServer) -> AsyncIterator[RedisPresence]:
    """RedisPresence under a key prefix of its own."""
    store = RedisPresence(redis_server.uri, prefix=f"test:{uuid.uuid4().hex}:")
    yield store
    await store.close()


class MongoFaults:
    """Arms mongod's ``failCommand`` fail point for one client only (by its appName)."""

    def __init__(self, uri: str):
        self.app = f"faulty-{uuid.uuid4().hex[:8]}"
        self.uri = f"{uri}&appName={self.app}"
        self._admin: AsyncMongoClient = AsyncMongoClient(uri)

    async def lose_next_reply(self, command: str) -> None:
        """The next ``command`` is applied, but its reply says "retry me"; the driver
        re-sends it, as after a reply lost to a network fault."""
        # NetworkTimeout is retryable on every pymongo path and, unlike the shutdown
        # and not-primary codes, does not make the driver drop the server first.
        await self._arm(command, writeConcernError={
            "code": 89, "codeName": "NetworkTimeout", "errmsg": "reply lost (fail point)",
            "errorLabels": ["RetryableWriteError"],
        })

    async def _arm(self, command: str, **data: object) -> None:
        await self._admin.admin.command({
            "configureFailPoint": "failCommand", "mode": {"times": 1},
            "data": {"failCommands": [command], "appName": self.app, **data},
        })

    async def close(self) -> None:
        await self._admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await self._admin.close()


@pytest.fixture
async def mongo_faults(mongo_server: EmbeddedServer) -> AsyncIterator[MongoFaults]:
    faults = MongoFaults(mongo_server.uri)
    yield faults
    await faults.close()


@pytest.fixture
async def faulty_mongo_stores(mongo_faults: MongoFaults) -> AsyncIterator[MongoStores]:
    """MongoStores whose requests ``mongo_faults`` can make fail."""
    stores = MongoStores(mongo_faults.uri, f"test_{uuid.uuid4().hex}")
    await stores.ensure_indexes()
    yield stores
    await stores.close()
