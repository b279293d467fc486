"""Real database servers for the tests: one of each per session, a fresh namespace per test.

Registered from tests/conftest.py as a pytest plugin.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Iterator

import httpx
import pytest
from pymongo import AsyncMongoClient

from storage.embedded import EmbeddedCluster, EmbeddedServer, free_port, start_mongo, start_redis, start_redis_cluster
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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A real Redis Cluster: 3 masters, the slots split evenly, no replicas (~2.5 s to start)."""
    cluster = start_redis_cluster(3, log_dir=tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def redis_uri(request: pytest.FixtureRequest) -> str:
    """The URL of each kind of Redis raychat supports, in turn: one server, then a Redis Cluster.
    A test taking it runs once per kind; the cluster starts only if such a test runs."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").uri
    return request.getfixturevalue("redis_server").uri


@dataclass(frozen=True)
class S3Server:
    """A running S3 API server: ``endpoint`` is host:port (plain HTTP), any bucket may be made."""
    endpoint: str
    access_key: str
    secret_key: str
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server (PyPI ``moto[server]``), a real S3 REST server on a free port, spoken to over
    HTTP like MinIO. It accepts any credentials and, unlike MinIO and AWS, does not enforce POST
    policies (moto/s3/responses.py, ``_bucket_response_post``): tests say which checks need real S3."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"127.0.0.1:{port}", "raychat-test", "raychat-test-secret", proc.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
            try:
                httpx.get(server.url + "/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer in 60 s: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()        # by its pid, which stays ours until wait() reaps it
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


@pytest.fixture
async def cluster_presence(redis_cluster: EmbeddedCluster) -> AsyncIterator[RedisPresence]:
    """RedisPresence on the Redis Cluster, under a key prefix of its own."""
    store = RedisPresence(redis_cluster.uri, prefix=f"test:{uuid.uuid4().hex}:")
    yield store
    await store.close()


class MongoFaults:
    """Arms mongod's ``failCommand`` fail point for one client only (by its appName)."""

    def __init__(self, uri: str):
        self.app = f"faulty-{uuid.uuid4().hex[:8]}"
        self.uri = f"{uri}&appName={self.app}"
        self._admin: AsyncMongoClient = AsyncMongoClient(uri)

    async def lose_next_reply(self, command: str, times: int = 1) -> None:
        """The next ``times`` sends of ``command`` are applied, but each reply says "retry me",
        as after a reply lost to a network fault."""
        # NetworkTimeout is retryable on every pymongo path and, unlike the shutdown
        # and not-primary codes, does not make the driver drop the server first.
        await self._arm(command, times, writeConcernError={
            "code": 89, "codeName": "NetworkTimeout", "errmsg": "reply lost (fail point)",
            "errorLabels": ["RetryableWriteError"],
        })

    async def _arm(self, command: str, times: int, **data: object) -> None:
        await self._admin.admin.command({
            "configureFailPoint": "failCommand", "mode": {"times": times},
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
