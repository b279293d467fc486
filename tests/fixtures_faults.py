"""The fault suite's fixtures (tests/faults/): its scale, and a gateway whose stores it may break.

``faulty`` is a second gateway app on the session's Ray and Serve (the ``raychat_strict``
pattern), mounted under /faults, with a redis-server and a SecantusDB of its own and its own
``namespace``, hence its own directory and ActorHosts. The hosts talk to the stores too
(presence in Redis, events in the store): sharing the session's hosts would leave them on the
session's servers, untouched by the fault, and stopping the session's servers would break
every other test. So a test may stop, pause and restart these, and redeploy this app.

``scale`` is the harness's size: small in the normal run; ``--soak-minutes`` and
``--soak-clients`` (``python -m tests.faults.soak``) make it a soak, which also deselects
the tests that do not scale. Every run's report line is repeated in the terminal summary.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import pytest

from storage.embedded import EmbeddedServer, start_mongo, start_redis
from tests.faults.harness import REPORTS, Scale

FAULTS_PREFIX = "/faults"
# Small enough that a socket which stops reading overflows it quickly (tests/faults/test_slow_consumer.py).
FAULTS_SOCKET_QUEUE_MAX = 200
_SOAK_TESTS = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raychat fault suite")
    group.addoption("--soak-minutes", type=float, default=0.0,
                    help="soak mode: run each scalable fault test repeatedly for its share of this many minutes")
    group.addoption("--soak-clients", type=int, default=0, help="soak mode: clients per fault test")


def _soaking(config: pytest.Config) -> bool:
    return config.getoption("--soak-minutes") > 0 or config.getoption("--soak-clients") > 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _soaking(config):
        return
    keep = [i for i in items if "scale" in getattr(i, "fixturenames", ())]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep
    config.stash[_SOAK_TESTS] = len(keep)       # each gets its share of --soak-minutes


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if REPORTS:
        terminalreporter.section("fault suite")
        for line in REPORTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    base = Scale()
    if not _soaking(pytestconfig):
        return base
    clients = pytestconfig.getoption("--soak-clients") or 50
    minutes = pytestconfig.getoption("--soak-minutes") or 5.0
    share_s = minutes * 60 / max(1, pytestconfig.stash.get(_SOAK_TESTS, 1))
    return replace(base, clients=clients, conversations=max(2, clients // 5), soak_s=share_s,
                   warmup_s=10.0, rest_s=20.0, settle_s=300.0, recover_s=120.0)


@dataclass
class Faulty:
    """The /faults app and the servers under it. Restarts reuse the port (and the store's
    data directory), so the app's settings stay true."""
    base_url: str
    ws_url: str
    settings: object
    redis: EmbeddedServer
    mongo: EmbeddedServer
    store_dir: Path
    log_dir: Path
    redeploys: int = 0

    # ---- Redis ----------------------------------------------------------------------------
    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        self.redis = start_redis(port=self.redis.port, log_path=self.log_dir / "redis.log")

    # ---- the store ------------------------------------------------------------------------
    def pause_store(self) -> None:
        """SIGSTOP: the store hangs with every connection open (nothing is refused, nothing answers)."""
        os.killpg(self.mongo.pid, signal.SIGSTOP)

    def resume_store(self) -> None:
        os.killpg(self.mongo.pid, signal.SIGCONT)

    def stop_store(self) -> None:
        """A clean stop (SIGTERM): connections are refused until it is started again."""
        self.resume_store()         # a stopped process would never see the SIGTERM
        self.mongo.stop(timeout=20)

    def start_store(self) -> None:
        self.mongo = start_mongo(self.store_dir, port=self.mongo.port, log_path=self.log_dir / "mongo.log")

    # ---- the gateway ----------------------------------------------------------------------
    def redeploy(self) -> None:
        """``serve.run`` the app again with a changed setting: Serve replaces its replica, and
        the old one's sockets are cut. Returns once the new version serves."""
        from ray import serve

        from serve_app import build_app

        self.redeploys += 1
        self.settings = self.settings.model_copy(update={"hello_timeout_s": 2.0 + self.redeploys % 2})
        serve.run(build_app(self.settings), name="faults", route_prefix=FAULTS_PREFIX)


@pytest.fixture(scope="session")
def faulty(raychat, tmp_path_factory) -> Iterator[Faulty]:
    import ray
    from ray import serve

    from raychat.config import Settings
    from serve_app import build_app

    log_dir = tmp_path_factory.mktemp("faults-logs")
    store_dir = tmp_path_factory.mktemp("faults-store")
    redis = start_redis(log_path=log_dir / "redis.log")
    # On disk, not in memory: the 30 s outage stops the process and starts it again on its data.
    mongo = start_mongo(store_dir, log_path=log_dir / "mongo.log")
    namespace = f"raychat-faults-{os.getpid()}"
    settings = Settings.from_dict({
        **raychat.settings.to_dict(), "mongodb_uri": mongo.uri, "redis_url": redis.uri, "mongodb_db": "faults",
        "namespace": namespace, "data_dir": str(tmp_path_factory.mktemp("faults-data")),
        "hosts": 1,                 # one more Ray worker process is enough to host every key
        "push_enabled": False,      # no push worker serves this app's queue
        "socket_queue_max": FAULTS_SOCKET_QUEUE_MAX})
    f = Faulty(raychat.base_url + FAULTS_PREFIX, raychat.ws_url + FAULTS_PREFIX, settings, redis, mongo,
               store_dir, log_dir)
    try:
        serve.run(build_app(settings), name="faults", route_prefix=FAULTS_PREFIX)
        yield f
    finally:
        try:
            serve.delete("faults")
        except Exception:
            pass
        _stop_namespace_actors(ray, namespace)
        try:
            f.resume_store()
        except ProcessLookupError:
            pass
        f.redis.stop()
        f.mongo.stop()


def _stop_namespace_actors(ray, namespace: str) -> None:
    """The directory first (it would start hosts again), then the hosts: detached, they would
    otherwise hold their processes until the session's Ray shuts down."""
    from actors.membership import DIRECTORY_NAME

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == namespace]
    for name in sorted(names, key=lambda n: n != DIRECTORY_NAME):
        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:
            pass
