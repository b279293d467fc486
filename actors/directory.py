"""Finding and starting the ActorHosts: named, detached Ray actors restarted by Ray when they die."""

from __future__ import annotations

from typing import Any

import ray

from raychat.config import Settings

from .host import ActorHost
from .placement import host_names

RemoteHost = ray.remote(ActorHost)


def host_handle(name: str, settings: Settings):
    return RemoteHost.options(
        name=name, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
        max_restarts=-1,          # Ray brings a dead host back; its actors reactivate on their next message
        max_task_retries=0,       # callers retry (sends are idempotent), so a poison call cannot loop
        num_cpus=0, max_concurrency=100_000,
    ).remote(name, settings.to_dict())


def ensure_hosts(settings: Settings) -> dict[str, Any]:
    return {name: host_handle(name, settings) for name in host_names(settings.hosts)}
