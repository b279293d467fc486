"""Calls from a gateway replica to the virtual actors, wherever they live.

The owner of a key is computed from the membership view (actors/membership.py), which the
router keeps current by long-polling the directory. A host that is restarting is waited for
(briefly) and the call retried, and so is a host that answers ``moved`` (its view or ours is
behind during a membership change): every call the gateway makes is idempotent (sends carry
client_msg_id, connects are set additions), so a retry never duplicates anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

import ray
from ray.exceptions import ActorDiedError, ActorUnschedulableError, GetTimeoutError, RayActorError

from actors.directory import ensure_directory
from actors.host_rpc import HostLink, LinkBroken
from actors.membership import EMPTY, View
from actors.placement import owner
from raychat import logs
from raychat.config import Settings
from raychat.errors import ChatError, Internal, Unavailable

log = logging.getLogger(__name__)

# ActorUnschedulableError: a host pinned to a node that has just left; the view drops it
# within a second and the retry goes to the key's new owner.
try:   # newer Ray: a temporarily unreachable actor is not the same as a dead one
    from ray.exceptions import ActorUnavailableError
    _RETRYABLE: tuple[type[BaseException], ...] = (RayActorError, ActorUnavailableError, GetTimeoutError,
                                                   ActorUnschedulableError)
except ImportError:  # pragma: no cover
    _RETRYABLE = (RayActorError, GetTimeoutError, ActorUnschedulableError)

# listener(old host names, new host names), called on the event loop after each view change
Listener = Callable[[list[str], list[str]], None]


class _Moved(Exception):
    """The host called does not own the key under its view."""


class HostRouter:
    def __init__(self, settings: Settings, *, retry_for_s: float = 8.0):
        self.settings = settings
        self.directory = ensure_directory(settings)
        self.view: View = EMPTY
        self.names: list[str] = []
        self.handles: dict[str, Any] = {}
        self.retry_for_s = retry_for_s
        self.call_timeout_s = settings.store_timeout_ms / 1000 * 3 + 5
        self._channels: dict[tuple[str, str], list] = {}
        # Calls travel over a TCP link per host (actors/host_rpc.py), not as Ray calls.
        self._links: dict[str, HostLink] = {}
        self._opening: dict[str, asyncio.Future] = {}
        self._caller = f"gw-{os.getpid()}"
        self._listeners: list[Listener] = []
        self._watcher: asyncio.Task | None = None
        # A send still queued in a host this long after it left is refused there, not written:
        # it leaves time for the write (store_timeout) before this gateway stops waiting, so an
        # `unavailable` answer means what the protocol says: nothing was accepted.
        self.admission_window_s = self.call_timeout_s - settings.store_timeout_ms / 1000 - 1

    # ---- the membership view ---------------------------------------------------------
    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until the directory has published its hosts and each of them answers."""
        deadline = time.monotonic() + timeout_s
        while not self.names:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no ActorHost was started in time; see the raychat-directory actor's log")
            self._apply(View.from_dict(ray.get(self.directory.watch.remote(self.view.version, min(left, 10.0)),
                                               timeout=left + 5)))
        ray.get([self._lookup(n).ready.remote() for n in self.names], timeout=max(1.0, deadline - time.monotonic()))

    def start(self) -> None:
        """Follow the view from now on (idempotent; needs the running event loop)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def _watch(self) -> None:
        delay = 0.1
        while True:
            try:
                view = View.from_dict(await self.directory.watch.remote(self.view.version))
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Restarting: Ray brings it back. Killed for good: the lookup starts it again.
                log.warning("membership watch failed: %r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                try:
                    self.directory = await asyncio.to_thread(ensure_directory, self.settings)
                except Exception as again:
                    log.warning("directory lookup failed: %r", again)
                continue
            self._apply(view)

    def _apply(self, view: View) -> None:
        if view.version <= self.view.version:
            return
        old = self.names
        self.view = view
        self.names = list(view.hosts)
        self.handles = {n: h for n, h in self.handles.items() if n in view.hosts}
        for name in [n for n in self._links if n not in view.hosts]:
            self._links.pop(name).close()
        if old != self.names:
            log.info("membership view %s: %d hosts", view.version, len(self.names))
            for listener in self._listeners:
                try:
                    listener(old, self.names)
                except Exception:
                    log.exception("membership listener failed")

    async def _catch_up(self, version: int) -> None:
        """A host has seen a newer view than ours: fetch it now rather than wait for the watch."""
        if version > self.view.version:
            try:
                self._apply(View.from_dict(await self.directory.view_now.remote()))
            except Exception as exc:
                log.info("view fetch failed: %r", exc)

    def _lookup(self, name: str):
        handle = self.handles.get(name)
        if handle is None:
            handle = self.handles[name] = ray.get_actor(name, namespace=self.settings.namespace)
        return handle

    async def handle(self, name: str):
        """The actor handle of host ``name``; raises ValueError if Ray does not know it (yet)."""
        handle = self.handles.get(name)
        if handle is None:
            handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.settings.namespace)
            if name in self.names:
                self.handles[name] = handle
        return handle

    async def refresh(self, name: str) -> None:
        """A host that died for good may have been started again under its name: look it up."""
        try:
            handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.settings.namespace)
        except ValueError:
            return    # not there (yet): keep the old handle, the caller retries
        if name in self.names:
            self.handles[name] = handle

    async def link(self, name: str) -> HostLink:
        """The call link to host ``name``, opened on first use (where it listens comes from a
        Ray call); callers that ask while it opens share that one opening."""
        link = self._links.get(name)
        if link is not None and not link.broken:
            return link
        opening = self._opening.get(name)
        if opening is None:
            opening = self._opening[name] = asyncio.ensure_future(self._open_link(name))
            opening.add_done_callback(lambda f: (self._opening.pop(name, None),
                                                 f.cancelled() or f.exception()))   # no "never retrieved"
        return await asyncio.shield(opening)

    async def _open_link(self, name: str) -> HostLink:
        handle = await self.handle(name)
        link = await HostLink.open(await handle.fanout_endpoint.remote(), self._caller)
        old = self._links.get(name)
        if old is not None:
            old.close()
        self._links[name] = link
        return link

    def _drop_link(self, name: str) -> None:
        link = self._links.pop(name, None)
        if link is not None:
            link.close()

    def owner(self, kind: str, ident: str) -> str:
        """The host that owns the key under the current view; LookupError while there is none."""
        return owner((kind, ident), self.names)

    # ---- calls -----------------------------------------------------------------------
    async def call(self, kind: str, ident: str, method: str, arg: Any = None) -> Any:
        """Deliver one message to a virtual actor and await its answer.

        Ray runs an async actor's calls in any order, so messages to one virtual actor leave
        this replica through one channel: at most one Ray call in flight per actor, carrying
        everything queued for it meanwhile, in order. A sender's messages therefore reach the
        mailbox in the order it sent them, and a busy conversation gets one call (and one
        group commit) per batch rather than per message.
        """
        self.start()
        key = (kind, ident)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = []
            # Outside this caller's log context: the pump carries later callers' messages too.
            logs.detached(asyncio.get_running_loop().create_task, self._pump(key, channel))
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for_s
        delay = 0.05
        while True:
            name = None
            try:
                name = self.owner(kind, ident)    # again on every try: the view may have changed
                link = await self.link(name)
                results = await link.call("call_many", kind, ident, items, timeout_s=self.call_timeout_s)
                if results and "moved" in results[0]:
                    await self._catch_up(results[0]["moved"])
                    raise _Moved()
                return results
            except (*_RETRYABLE, LinkBroken, asyncio.TimeoutError, _Moved, LookupError, ValueError) as exc:
                if name is not None and (isinstance(exc, (ActorDiedError, LinkBroken)) or
                                         (name in self._links and self._links[name].broken)):
                    self._drop_link(name)
                    await self.refresh(name)
                if loop.time() + delay > deadline:
                    log.warning("host %s unavailable for %s %s: %r", name, kind, ident, exc)
                    raise Unavailable("chat service restarting, retry shortly", retry_after_ms=1000) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
