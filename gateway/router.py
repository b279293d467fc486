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
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError

from actors.directory import ensure_hosts
from actors.placement import host_names, owner
from raychat.config import Settings
from raychat.errors import ChatError, Internal, Unavailable

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
        self._channels: dict[tuple[str, str], list] = {}
        # A send still queued in a host this long after it left is refused there, not written:
        # it leaves time for the write (store_timeout) before this gateway stops waiting, so an
        # `unavailable` answer means what the protocol says: nothing was accepted.
        self.admission_window_s = self.call_timeout_s - settings.store_timeout_ms / 1000 - 1

    async def refresh(self, name: str) -> None:
        """A host that died for good may have been started again under its name: look it up."""
        try:
            self.handles[name] = await asyncio.to_thread(ray.get_actor, name, namespace=self.settings.namespace)
        except ValueError:
            pass    # not there (yet): keep the old handle, the caller retries

    def owner(self, kind: str, ident: str) -> str:
        return owner((kind, ident), self.names)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        ray.get([h.ready.remote() for h in self.handles.values()], timeout=timeout_s)

    async def call(self, kind: str, ident: str, method: str, arg: Any = None) -> Any:
        """Deliver one message to a virtual actor and await its answer.

        Ray runs an async actor's calls in any order, so messages to one virtual actor leave
        this replica through one channel: at most one Ray call in flight per actor, carrying
        everything queued for it meanwhile, in order. A sender's messages therefore reach the
        mailbox in the order it sent them, and a busy conversation gets one call (and one
        group commit) per batch rather than per message.
        """
        key = (kind, ident)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = []
            asyncio.get_running_loop().create_task(self._pump(key, channel))
        fut = asyncio.get_running_loop().create_future()
        channel.append((method, arg, fut))
        res = await fut
        if "err" in res:
            raise ChatError.from_dict(res["err"])
        return res["ok"]

    async def _pump(self, key: tuple[str, str], channel: list) -> None:
        try:
            while channel:
                batch = channel[:]
                del channel[:]
                try:
                    results = await self._call_host(key, [(m, a) for m, a, _ in batch])
                except ChatError as exc:
                    results = [{"err": exc.to_dict()}] * len(batch)
                except Exception:     # a bug on either side: answer, never leave a caller hanging
                    log.exception("call to %s %s failed", *key)
                    results = [{"err": Internal("internal error").to_dict()}] * len(batch)
                for (_, _, fut), res in zip(batch, results):
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._channels.pop(key, None)
            for _, _, fut in channel:     # only if this task was cancelled mid-way
                if not fut.done():
                    fut.set_result({"err": Unavailable("gateway stopping").to_dict()})

    async def _call_host(self, key: tuple[str, str], items: list[tuple[str, Any]]) -> list[dict]:
        kind, ident = key
        name = self.owner(kind, ident)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                return await asyncio.wait_for(self.handles[name].call_many.remote(kind, ident, items),
                                              self.call_timeout_s)
            except (*_RETRYABLE, asyncio.TimeoutError) as exc:
                if isinstance(exc, ActorDiedError):
                    await self.refresh(name)
                if loop.time() + delay > deadline:
                    log.warning("host %s unavailable for %s %s: %r", name, kind, ident, exc)
                    raise Unavailable("chat service restarting, retry shortly", retry_after_ms=1000) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
