"""The Serve application: `serve run serve_app:app`, or `raychat up` for the embedded default.

One deployment, the gateway, whose replicas each hold many WebSockets; a socket
is one ongoing request for its whole life, so max_ongoing_requests is the
replica's connection capacity. http_options.request_timeout_s must stay unset:
it would cut every socket at that age.
"""

from __future__ import annotations

import asyncio

from ray import serve

from gateway.app import build_context, create_app
from gateway.context import set_context
from raychat.config import Settings, load_settings

api = create_app()


@serve.deployment(ray_actor_options={"num_cpus": 0}, graceful_shutdown_timeout_s=5,
                  health_check_period_s=5)
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: dict):
        self.ctx = build_context(Settings.from_dict(settings))
        set_context(self.ctx)
        asyncio.get_event_loop().call_soon(self.ctx.hub.start)

    async def check_health(self) -> None:
        # Serve restarts a replica whose check fails; a store outage is not the replica's fault.
        return None


def build_app(settings: Settings):
    return Gateway.options(
        num_replicas=settings.gateway_replicas,
        max_ongoing_requests=settings.max_connections_per_replica,
    ).bind(settings.to_dict())


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
