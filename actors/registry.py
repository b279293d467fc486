"""Activation and passivation of the virtual actors one host holds.

An actor is activated by its first message (``on_activate`` runs inside the
mailbox, before that message, so nothing overtakes it) and passivated by
``sweep`` once it has been idle for ``idle_after_s`` on the injected clock.
A failed activation fails only the message that caused it; the next message
tries again. No Ray import: the host wraps this, the tests drive it directly.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any, Callable, ClassVar, Protocol

from raychat.clock import Clock

from . import metrics
from .mailbox import Mailbox

log = logging.getLogger(__name__)


class PassivationReason(enum.Enum):
    IDLE = "idle"
    HOST_STOPPING = "host_stopping"
    FENCED = "fenced"          # another writer holds the key: drop state, reload on next message
    MOVED = "moved"            # the membership changed and another host owns the key now


class VirtualActor(Protocol):
    batchable: ClassVar[frozenset[str]]

    async def on_activate(self) -> None:
        """Load state from storage. Raising fails the message that activated it."""

    async def on_passivate(self, reason: PassivationReason) -> None:
        """Last call before the actor is dropped from memory."""

    async def handle(self, method: str, arg: Any) -> Any:
        """Handle one message."""

    async def handle_batch(self, method: str, args: list[Any]) -> list[Any]:
        """Handle consecutive messages of a batchable method; one result (or exception) each."""

    def can_passivate(self) -> bool:
        """False while the actor must stay (e.g. a session with live sockets)."""


class _Slot:
    __slots__ = ("actor", "mailbox", "last_used", "activated")

    def __init__(self, actor: VirtualActor, capacity: int, on_error: Callable[[BaseException], None]):
        self.actor = actor
        self.activated = False
        self.last_used = 0.0
        self.mailbox = Mailbox(self._handle, capacity, batch_handler=self._handle_batch,
                               batchable=type(actor).batchable)
        self.mailbox.on_error = on_error

    async def _ensure_active(self) -> None:
        if not self.activated:
            await self.actor.on_activate()
            self.activated = True

    async def _handle(self, method: str, arg: Any) -> Any:
        await self._ensure_active()
        return await self.actor.handle(method, arg)

    async def _handle_batch(self, method: str, args: list[Any]) -> list[Any]:
        await self._ensure_active()
        return await self.actor.handle_batch(method, args)


class Registry:
    def __init__(self, factories: dict[str, Callable[[str], VirtualActor]], clock: Clock, *,
                 idle_after_s: float, mailbox_capacity: int):
        self._factories = factories
        self._clock = clock
        self._idle_after_s = idle_after_s
        self._capacity = mailbox_capacity
        self._slots: dict[tuple[str, str], _Slot] = {}
        self.activations = 0
        self.passivations = 0

    def _slot(self, kind: str, ident: str) -> _Slot:
        key = (kind, ident)
        slot = self._slots.get(key)
        if slot is None:
            factory = self._factories.get(kind)
            if factory is None:
                raise LookupError(f"no virtual actor kind {kind!r}")
            slot = _Slot(factory(ident), self._capacity, self._report)
            self._slots[key] = slot
            self.activations += 1
            metrics.ACTIVATIONS.labels(kind).inc()
        slot.last_used = self._clock.monotonic()
        return slot

    def post(self, kind: str, ident: str, method: str, arg: Any = None) -> "asyncio.Future":
        """Queue one message (activating the actor if needed) without waiting: messages posted
        one after another reach the actor in that order. Raises RateLimited if its mailbox is full."""
        return self._slot(kind, ident).mailbox.post(method, arg)

    async def call(self, kind: str, ident: str, method: str, arg: Any = None) -> Any:
        """Deliver one message to the actor (activating it if needed) and await its answer."""
        return await self.post(kind, ident, method, arg)

    def peek(self, kind: str, ident: str) -> Any | None:
        """The activated actor, or None; never activates."""
        slot = self._slots.get((kind, ident))
        return slot.actor if slot is not None and slot.activated else None

    def actors(self, kind: str):
        return [s.actor for (k, _), s in self._slots.items() if k == kind and s.activated]

    def keys(self) -> list[tuple[str, str]]:
        """Every key held, activated or not."""
        return list(self._slots)

    def count(self, kind: str | None = None) -> int:
        return sum(1 for (k, _) in self._slots if kind is None or k == kind)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def mailbox_depth(self) -> int:
        return sum(len(s.mailbox) for s in self._slots.values())

    def mailbox_depths(self) -> list[int]:
        """Messages waiting in each mailbox that has any."""
        return [n for s in self._slots.values() if (n := len(s.mailbox))]

    async def sweep(self) -> list[tuple[str, str]]:
        """Passivate every actor idle for longer than idle_after_s; return their keys."""
        cutoff = self._clock.monotonic() - self._idle_after_s
        gone = [k for k, s in self._slots.items()
                if s.last_used <= cutoff and s.mailbox.idle and s.actor.can_passivate()]
        for key in gone:
            await self.passivate(key, PassivationReason.IDLE)
        return gone

    async def passivate(self, key: tuple[str, str], reason: PassivationReason) -> None:
        slot = self._slots.pop(key, None)  # removed first: a message arriving now activates afresh
        if slot is None:
            return
        self.passivations += 1
        metrics.PASSIVATIONS.labels(key[0], reason.value).inc()
        if slot.activated:
            try:
                await slot.actor.on_passivate(reason)
            except Exception:
                log.exception("on_passivate failed for %s", key)

    async def passivate_if_idle(self, key: tuple[str, str], reason: PassivationReason) -> bool:
        """Passivate the actor unless a message is queued or running (dropping its state under a
        running handler would break it); True if it is gone. Ignores ``can_passivate``: the
        caller decides that the actor must go (e.g. its key moved to another host)."""
        slot = self._slots.get(key)
        if slot is None:
            return True
        if not slot.mailbox.idle:
            return False
        await self.passivate(key, reason)
        return True

    async def passivate_all(self, reason: PassivationReason) -> None:
        for key in list(self._slots):
            await self.passivate(key, reason)

    def _report(self, exc: BaseException) -> None:
        log.error("virtual actor handler failed", exc_info=exc)
