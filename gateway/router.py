"""Calls from a gateway replica to the virtual actors, wherever they live.

A host that is restarting is waited for (briefly) and the call retried: every
call the gateway makes is idempotent (sends carry client_msg_id, connects are
set additions), so a retry never duplicates anything.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.directory import ensure_hosts
from actors.placement import host_names, owner
from raychat.config import Settings
from raychat.errors import ChatError, Unavailable

log = logging.getLogger(__name__)

try:   # newer Ray: a temporarily unreachable actor is not the same as a dead one
    from ray.exceptions import ActorUnavailableError
    _RETRYABLE: tuple[type[BaseException], ...] = (RayActorError, ActorUnavailableError, GetTimeoutError)
except ImportError:  # pragma: no cover
    _RETRYABLE = (RayActorError, GetTimeoutError)


class HostRouter:
    def __init__(self, settings: Settings, *, retry_for_s: float = 8.0):
        self.settings = settings
        self.names = host_names(settings.hosts)
        self.handles = ensure_hosts(settings)
        self.retry_for_s = retry_for_s
        self.call_timeout_s = settings.store_timeout_ms / 1000 * 3 + 5

    def owner(self, kind: str, ident: str) -> str:
        return owner((kind, ident), self.names)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        ray.get([h.ready.remote() for h in self.handles.values()], timeout=timeout_s)

    async def call(self, kind: str, ident: str, method: str, arg: Any = None) -> Any:
        name = self.owner(kind, ident)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                res = await asyncio.wait_for(self.handles[name].call.remote(kind, ident, method, arg),
                                             self.call_timeout_s)
            except (*_RETRYABLE, asyncio.TimeoutError) as exc:
                if loop.time() + delay > deadline:
                    log.warning("host %s unavailable for %s.%s: %r", name, kind, method, exc)
                    raise Unavailable("chat service restarting, retry shortly", retry_after_ms=1000) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if "err" in res:
                raise ChatError.from_dict(res["err"])
            return res["ok"]
