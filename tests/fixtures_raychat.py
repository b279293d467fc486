"""One raychat per test session: Ray, Serve and the gateway on the real servers.

Ray and Serve take seconds to start, so they start once; each test makes its
own users and conversations, so tests do not see each other's data.
"""

from __future__ import annotations

import os

import httpx
import pytest

from storage.embedded import free_port


@pytest.fixture(scope="session")
def raychat(mongo_server, redis_server, tmp_path_factory):
    import ray
    from ray import serve

    from raychat.config import Settings
    from serve_app import build_app

    data_dir = tmp_path_factory.mktemp("raychat")
    port = free_port()
    settings = Settings(mongodb_uri=mongo_server.uri, redis_url=redis_server.uri,
                        mongodb_db=f"e2e_{os.getpid()}", jwt_secret="e2e-secret-" + "x" * 40,
                        data_dir=data_dir, hosts=2, passivate_after_s=30, store_timeout_ms=2000, hello_timeout_s=2,
                        namespace=f"raychat-test-{os.getpid()}")
    ray.init(num_cpus=2, include_dashboard=False, namespace=settings.namespace,
             runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0"}}, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(settings), name="raychat", route_prefix="/")
    base = f"http://127.0.0.1:{port}"

    class Running:
        pass

    r = Running()
    r.base_url, r.ws_url, r.settings, r.port = base, f"ws://127.0.0.1:{port}", settings, port
    yield r
    serve.shutdown()
    ray.shutdown()


@pytest.fixture
async def http(raychat):
    async with httpx.AsyncClient(base_url=raychat.base_url, timeout=30) as client:
        yield client
