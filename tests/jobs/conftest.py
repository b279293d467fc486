"""What the job tests share: per test a database and buckets of their own with the generated history
(``job_env``, which points the RAYCHAT_* environment a job reads at them), and one Ray for the tests
that run a job's ``main`` in this process (``jobs_ray``).

Ray: the suite's session gateway (tests/fixtures_raychat.py) may have started Ray already; then
the jobs run on it and it is left running. Otherwise this package starts a local Ray and stops it
after its last test, so a session fixture that starts Ray later finds none running. (Package
scope needs this directory's ``__init__.py``: without one, "package" is the whole ``tests``.)
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
from minio import Minio

from storage.mongo import MongoStores
from tests.jobs.dataset import History, build, load


@pytest.fixture(scope="package")
def jobs_ray() -> Iterator[None]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 namespace=f"raychat-jobs-test-{uuid.uuid4().hex[:8]}")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    if started:
        ray.shutdown()


@dataclass
class JobEnv:
    mongo_uri: str
    db: str
    s3: Minio
    media_bucket: str
    out_bucket: str
    history: History

    def stores(self, db: str | None = None) -> MongoStores:
        return MongoStores(self.mongo_uri, db or self.db)


@pytest.fixture
def job_env(mongo_server, moto_s3, monkeypatch) -> Iterator[JobEnv]:
    """The generated history (tests/jobs/dataset.py) in a fresh database and media bucket, an
    empty output bucket, and RAYCHAT_* set for them."""
    tag = uuid.uuid4().hex[:10]
    db, media_bucket, out_bucket = f"jobs_{tag}", f"media-{tag}", f"out-{tag}"
    s3 = Minio(moto_s3.endpoint, access_key=moto_s3.access_key, secret_key=moto_s3.secret_key, secure=False)
    s3.make_bucket(media_bucket)
    s3.make_bucket(out_bucket)
    for name, value in {"MONGODB_URI": mongo_server.uri, "MONGODB_DB": db, "S3_ENDPOINT": moto_s3.endpoint,
                        "S3_ACCESS_KEY": moto_s3.access_key, "S3_SECRET_KEY": moto_s3.secret_key,
                        "S3_SECURE": "false", "S3_BUCKET": media_bucket}.items():
        monkeypatch.setenv(f"RAYCHAT_{name}", value)
    history = build()

    async def fill() -> None:
        stores = MongoStores(mongo_server.uri, db)
        try:
            await stores.ensure_indexes()
            await load(history, stores, mongo_server.uri, db, s3, media_bucket)
        finally:
            await stores.close()

    asyncio.run(fill())
    yield JobEnv(mongo_server.uri, db, s3, media_bucket, out_bucket, history)
