"""What the push worker talks to: providers and the job queue. Plain data crosses each port.

    Outcome.kind      what the worker does with the delivery job
    ─────────────     ─────────────────────────────────────────────────────────────
    delivered         acknowledge it
    retry             transient (5xx, 429, timeout, connection error): try again after a
                      backoff (or the provider's Retry-After); dead-letter after
                      push_max_attempts; counts against the provider's circuit breaker
    invalid_token     the provider says the device is gone: remove it, acknowledge
    rejected          permanent (a payload the provider refuses): dead-letter at once
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, Sequence

Platform = Literal["fcm", "apns", "webhook"]
PLATFORMS: tuple[str, ...] = ("fcm", "apns", "webhook")


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Literal["delivered", "retry", "invalid_token", "rejected"]
    detail: str = ""
    retry_after_s: float | None = None     # the provider's Retry-After, when it gave one

    @classmethod
    def delivered(cls) -> "Outcome":
        return cls("delivered")

    @classmethod
    def retry(cls, detail: str, retry_after_s: float | None = None) -> "Outcome":
        return cls("retry", detail, retry_after_s)

    @classmethod
    def invalid_token(cls, detail: str) -> "Outcome":
        return cls("invalid_token", detail)

    @classmethod
    def rejected(cls, detail: str) -> "Outcome":
        return cls("rejected", detail)


@dataclass(frozen=True, slots=True)
class Notification:
    """What a push says. ``body`` and ``sender_id`` are None for end-to-end encrypted
    conversations: the server cannot read their messages, and FCM/APNs need not learn who wrote."""
    conversation_id: str
    seq: int
    title: str
    body: str | None
    sender_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Notification":
        return cls(d["conversation_id"], int(d["seq"]), d["title"], d.get("body"), d.get("sender_id"))


@dataclass(frozen=True, slots=True)
class Target:
    """Where one push goes: a registered device (storage.ports.Device, as plain fields)."""
    device_id: str
    user_id: str
    platform: str
    token: str


class PushProvider(Protocol):
    """One push service (FCM, APNs, a webhook receiver).

    ``send`` never raises for anything the network or the provider does: every failure is an
    ``Outcome`` (a timeout or refused connection is ``retry``). It returns within about the
    send timeout it was built with."""

    platform: str

    def breaker_key(self, target: Target) -> str:
        """Which circuit breaker guards sends to ``target``: one per provider, but one per
        receiving host for webhooks, so one user's dead endpoint stops no one else's pushes."""

    async def send(self, target: Target, notification: Notification) -> Outcome:
        """Deliver one notification to one device."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A job as read from the queue: ``entry_id`` is what ack/retry/dead-letter name."""
    entry_id: str
    job: dict[str, Any]


class JobQueue(Protocol):
    """At-least-once job queue shared by every worker (Redis Streams: push/queue.py).

    A job is a JSON-able dict. A job that was read stays *pending* for its reader until that
    reader settles it with exactly one of ``ack``, ``expand``, ``retry_later`` or
    ``dead_letter``, each of which is atomic (the job cannot be both settled and still pending,
    nor settled and lost). A pending job whose reader goes quiet for the visibility timeout is
    handed to another reader by ``claim_stale``. Every method may raise ``StoreUnavailable``.
    """

    async def enqueue(self, jobs: Sequence[dict[str, Any]]) -> None:
        """Add jobs, in one round trip."""

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Up to ``count`` jobs never read before, waiting up to ``block_ms`` for the first."""

    async def claim_stale(self, consumer: str, count: int) -> list[Entry]:
        """Up to ``count`` jobs pending for other readers longer than the visibility timeout,
        now pending for ``consumer``."""

    async def ack(self, entry_id: str) -> None:
        """The job is done: forget it."""

    async def expand(self, entry_id: str, jobs: Sequence[dict[str, Any]]) -> None:
        """Replace the job by ``jobs`` (enqueued), atomically."""

    async def retry_later(self, entry_id: str, job: dict[str, Any], due: float) -> None:
        """Settle the job and enqueue ``job`` (its next attempt) again at wall-clock time ``due``."""

    async def dead_letter(self, entry_id: str, job: dict[str, Any], reason: str) -> None:
        """Settle the job and keep it, with ``reason``, on the dead-letter stream."""

    async def promote_due(self, now: float, count: int) -> int:
        """Enqueue up to ``count`` retries due at ``now``; returns how many."""

    async def collapse(self, pairs: Sequence[tuple[str, str]], owner: str, window_s: float) -> list[bool]:
        """For each (device_id, conversation_id): True if a push may go (none went within
        ``window_s``, or ``owner`` holds the window: the same message job, read again), else False.
        A True takes the window for ``owner``."""
