"""The Serve applications: `serve run serve_app:app`, or `raychat up` for the embedded default.

The gateway application is one deployment whose replicas each hold many WebSockets; a socket
is one ongoing request for its whole life, so max_ongoing_requests is the
replica's connection capacity. http_options.request_timeout_s must stay unset:
it would cut every socket at that age.

The push application (`serve_app:build_push_app`, deployment `PushWorker`) is separate so it
scales apart from the gateway: each replica runs one push/worker.py loop in the background and
takes no requests (it has no route).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from ray import serve

from gateway import replica_server
from gateway.app import build_context, create_app
from gateway.context import set_context
from raychat import logs
from raychat.config import Settings, load_settings
from raychat.ingress import behind_haproxy, watch_cluster_nodes

api = create_app()


@serve.deployment(ray_actor_options={"num_cpus": 0}, graceful_shutdown_timeout_s=5,
                  health_check_period_s=5)
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: dict):
        s = Settings.from_dict(settings)
        logs.configure(s.log_level, s.log_format)
        replica_server.configure(ws_compression=s.ws_compression)     # before Serve starts it
        self.ctx = build_context(s)
        set_context(self.ctx)
        asyncio.get_event_loop().call_soon(self.ctx.hub.start)
        asyncio.get_event_loop().call_soon(self.ctx.media.start)     # the bucket, then the sweep of stale uploads
        if behind_haproxy():
            # Which peers are HAProxy (of any node), so the client address they forward is believed.
            self._nodes = asyncio.get_event_loop().create_task(watch_cluster_nodes())

    async def check_health(self) -> None:
        # Serve restarts a replica whose check fails; a store outage is not the replica's fault.
        return None


def build_app(settings: Settings):
    return Gateway.options(
        num_replicas=settings.gateway_replicas,
        max_ongoing_requests=settings.max_connections_per_replica,
    ).bind(settings.to_dict())


@serve.deployment(ray_actor_options={"num_cpus": 0}, graceful_shutdown_timeout_s=15,
                  health_check_period_s=10)
class PushWorker:
    """Consumes the push job stream (push/worker.py) in a background task for the replica's life."""

    def __init__(self, settings: dict):
        from push.runtime import build_worker
        from raychat.config import ConfigError

        s = Settings.from_dict(settings)
        logs.configure(s.log_level, s.log_format)
        try:
            # Unique per replica: a consumer name shared by two live workers would mix their pending jobs.
            self.worker = build_worker(s, consumer=f"{socket.gethostname()}-{os.getpid()}")
        except ConfigError as exc:      # a SystemExit: as such it would end the replica without a word
            raise RuntimeError(str(exc)) from None
        # The constructor runs on the replica's event loop, which then keeps the task running.
        self._loop = asyncio.get_event_loop().create_task(self.worker.run())

    async def check_health(self) -> None:
        # The loop rides out store outages by itself; if it ever ends, Serve replaces the replica.
        if self._loop.done():
            why = "cancelled" if self._loop.cancelled() else repr(self._loop.exception())
            raise RuntimeError(f"the push loop ended: {why}")

    async def stats(self) -> dict[str, Any]:
        return {"consumer": self.worker.consumer, **self.worker.stats, "breakers": self.worker.breaker_states()}

    async def __del__(self):
        # Serve calls this on scale-down and redeploys (within graceful_shutdown_timeout_s): finish
        # the batch in hand if it is quick; anything unsettled is taken over by another worker.
        self.worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._loop), 10)
        except (asyncio.TimeoutError, Exception):
            self._loop.cancel()
        await self.worker.close()


def build_push_app(settings: Settings | dict | None = None):
    """The push application. `serve deploy` calls it with the config's `args` (a dict of setting
    overrides; the rest come from RAYCHAT_* variables); code passes Settings."""
    if not isinstance(settings, Settings):
        settings = load_settings(**(settings or {}))
    return PushWorker.options(num_replicas=settings.push_worker_replicas).bind(settings.to_dict())


def _from_environment():
    settings = load_settings()
    if not settings.jwt_secret:
        from gateway.tokens import load_or_create_secret
        settings = settings.model_copy(update={"jwt_secret": load_or_create_secret(settings.data_dir)})
    return build_app(settings)


def __getattr__(name: str):
    # `serve run serve_app:app` builds from the environment; importing this module builds nothing.
    if name == "app":
        return _from_environment()
    raise AttributeError(name)
