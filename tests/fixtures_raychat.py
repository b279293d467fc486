"""One raychat per test session: Ray, Serve and the gateway on the real servers.

Ray and Serve take seconds to start, so they start once; each test makes its
own users and conversations, so tests do not see each other's data.
"""

from __future__ import annotations

import os

import httpx
import pytest

from storage.embedded import free_listen_port

# The session gateway serves the whole suite, which registers hundreds of users from 127.0.0.1 and
# sends bursts of hundreds of messages: its per-IP and per-user limits are out of the way. The
# limits themselves are tested on ``raychat_strict``, which keeps the defaults.
GENEROUS_LIMITS = {"login_attempts_per_ip": 1_000_000, "registrations_per_ip": 1_000_000,
                   "message_burst": 1_000_000, "messages_per_s": 1_000_000.0,
                   "typing_burst": 1_000_000, "typing_per_s": 1_000_000.0, "ws_connections_per_user": 1000,
                   "search_burst": 1_000_000, "searches_per_s": 1_000_000.0}
STRICT_PREFIX = "/strict"


@pytest.fixture(scope="session")
def raychat(mongo_server, redis_server, tmp_path_factory, oidc_provider, moto_s3):
    import ray
    from ray import serve

    from raychat.config import Settings
    from raychat.ingress import free_port_window, serve_env
    from serve_app import build_app, build_push_app
    from tests.fixtures_push import WEBHOOK_SECRET as PUSH_WEBHOOK_SECRET

    data_dir = tmp_path_factory.mktemp("raychat")
    port = free_listen_port()
    settings = Settings(mongodb_uri=mongo_server.uri, redis_url=redis_server.uri,
                        mongodb_db=f"e2e_{os.getpid()}", jwt_secret="e2e-secret-" + "x" * 40,
                        data_dir=data_dir, hosts=2, passivate_after_s=30, store_timeout_ms=2000, hello_timeout_s=2,
                        presence_ttl_s=4,
                        namespace=f"raychat-test-{os.getpid()}", oidc_issuers=[oidc_provider.config],
                        # Media on S3 (moto_server); the disk mode runs as its own app (tests/e2e/test_media_disk.py).
                        s3_endpoint=moto_s3.endpoint, s3_access_key=moto_s3.access_key,
                        s3_secret_key=moto_s3.secret_key, s3_secure=False, s3_bucket=f"e2e-{os.getpid()}",
                        # Push: webhooks to the local receiver (tests/fixtures_push.py); the push worker
                        # runs as its own app, as in production.
                        push_webhook_secret=PUSH_WEBHOOK_SECRET, push_webhook_allowed="http://127.0.0.1",
                        **GENEROUS_LIMITS)
    # The front door `raychat up` uses (raychat/ingress.py): Serve's processes read it from the
    # environment the raylet starts with. Set only around ray.init, so the clusters other tests
    # start as subprocesses do not inherit this one's HAProxy ports. A replaced replica drains for
    # 2 s instead of Serve's 30 (the redeploy tests wait for it).
    ingress, ingress_env = serve_env(settings.ingress, stats_port=free_listen_port(),
                                     metrics_port=free_listen_port(), drain_s=2,
                                     replica_ports=free_port_window(), fallback_port=free_listen_port(),
                                     ws_compression=settings.ws_compression)
    saved = {k: os.environ.get(k) for k in ingress_env}
    os.environ.update(ingress_env)
    try:
        ray.init(num_cpus=2, include_dashboard=False, namespace=settings.namespace,
                 runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0"}}, log_to_driver=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(settings), name="raychat", route_prefix="/")
    serve.run(build_push_app(settings), name="raychat-push", route_prefix=None)
    base = f"http://127.0.0.1:{port}"

    class Running:
        pass

    r = Running()
    r.base_url, r.ws_url, r.settings, r.port = base, f"ws://127.0.0.1:{port}", settings, port
    r.ingress = ingress
    yield r
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def raychat_strict(raychat, captcha_verifier):
    """A second gateway app on the same Ray, Serve, hosts and stores, set up as one exposed to the
    internet: default abuse limits, CAPTCHA on (against the local verifier), WebSocket origins
    limited to https://chat.example, and 127.0.0.1 trusted as a proxy, so a test picks its client
    IP with X-Forwarded-For. Served under /strict; started only by the tests that use it."""
    from types import SimpleNamespace

    from ray import serve

    from raychat.config import Settings
    from serve_app import build_app

    base = {k: v for k, v in raychat.settings.to_dict().items() if k not in GENEROUS_LIMITS}
    settings = Settings.from_dict({**base, "trusted_proxies": "127.0.0.1", "allowed_origins": "https://chat.example",
                                   "captcha_verify_url": captcha_verifier.url,
                                   "captcha_secret": captcha_verifier.secret})
    serve.run(build_app(settings), name="strict", route_prefix=STRICT_PREFIX)
    yield SimpleNamespace(base_url=raychat.base_url + STRICT_PREFIX, ws_url=raychat.ws_url + STRICT_PREFIX,
                          settings=settings, port=raychat.port, captcha=captcha_verifier)
    serve.delete("strict")


@pytest.fixture
async def http(raychat):
    async with httpx.AsyncClient(base_url=raychat.base_url, timeout=30) as client:
        yield client
