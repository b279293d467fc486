"""A host's copy of the membership view, and what the host does when it changes.

The host long-polls the directory (actors/directory.py), so a new view arrives within
milliseconds of its publication. With it the host

- answers a call only for keys it owns under its view; any other gets ``moved`` and the
  router retries on the owner it computes (this shortens the window in which two hosts
  serve one key; the store's unique ``(conversation_id, seq)`` index is what makes that
  window safe);
- passivates the virtual actors it holds but no longer owns, each once its mailbox is idle,
  so their new owner activates them from the store (conversations flush their checkpoints
  as on any passivation; sessions stay online: their sockets are registered again with the
  new owner by the gateways).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from .membership import DIRECTORY_NAME, EMPTY, View
from .placement import Key, not_owned, owner
from .registry import PassivationReason, Registry

log = logging.getLogger("raychat.host")

FIRST_VIEW_WAIT_S = 10.0     # a call that finds the host without any view waits this long for one
_MOVE_POLL_S = 0.05          # a busy mailbox is looked at again this often until it drains


class MembershipFollower:
    def __init__(self, name: str, namespace: str, registry: Registry):
        self.name = name
        self.namespace = namespace
        self.registry = registry
        self.view: View = EMPTY
        self._known = asyncio.Event()
        self._mover: asyncio.Task | None = None
        self.moved_out = 0

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.view.hosts

    async def owns(self, key: Key) -> bool:
        """Whether this host owns ``key`` under its view; waits (briefly) for a first view."""
        if not self._known.is_set():
            try:
                await asyncio.wait_for(self._known.wait(), FIRST_VIEW_WAIT_S)
            except asyncio.TimeoutError:
                return False
        return bool(self.view.hosts) and owner(key, self.view.hosts) == self.name

    def apply(self, view: View) -> bool:
        """Take ``view`` if it is newer; start handing over the keys it moved elsewhere."""
        if view.version <= self.view.version:
            return False
        self.view = view
        self._known.set()
        if self._mover is None or self._mover.done():
            self._mover = asyncio.get_running_loop().create_task(self.move_out())
        return True

    async def move_out(self) -> None:
        """Passivate every held key another host owns, each as soon as its mailbox is idle.

        Owned-ness is computed again on each pass, so a view that changes meanwhile (or
        changes back) is followed; no new message reaches a moved key (``owns`` refuses it),
        so every mailbox drains."""
        while True:
            keys = not_owned(self.registry.keys(), self.name, self.view.hosts)
            if not keys:
                return
            busy = 0
            for key in keys:
                try:
                    if await self.registry.passivate_if_idle(key, PassivationReason.MOVED):
                        self.moved_out += 1
                    else:
                        busy += 1
                except Exception:
                    log.exception("passivating moved key %s failed", key)
            if busy:
                await asyncio.sleep(_MOVE_POLL_S)

    async def follow(self) -> None:
        """Keep the view current, forever (a background task of the host)."""
        directory: Any = None
        delay = 0.1
        while True:
            try:
                if directory is None:
                    directory = await asyncio.to_thread(ray.get_actor, DIRECTORY_NAME, namespace=self.namespace)
                view = View.from_dict(await directory.watch.remote(self.view.version))
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # the directory is (re)starting: find it again
                log.info("membership watch failed: %r", exc)
                directory = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.apply(view)
