"""The push worker: read jobs, handle them, settle each one. Plain asyncio, no Ray.

One ``step``: move due retries back onto the stream, take over jobs of dead workers
(XAUTOCLAIM, now and then), else read new ones; handle the batch side by side; settle each
job (push/ports.py JobQueue: ack, expand, retry_later or dead_letter). A job whose handling
is cut short (the worker dies, Redis goes away) is simply left pending, and the visibility
timeout hands it to a live worker: at-least-once.

Message jobs become delivery jobs (push/jobs.py). A delivery job goes through its provider's
circuit breaker: while the breaker is open the job waits for the cool-down **without using an
attempt** (nor does a failed half-open trial use one), so a long outage never dead-letters a
push; only failures while the provider seemed healthy count towards push_max_attempts.
Breakers live in each worker process; they need not agree across workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from raychat.clock import Clock
from raychat.config import Settings
from storage.errors import StoreError

from .backoff import retry_delay_s
from .breaker import CircuitBreaker
from .jobs import delivery_job, next_attempt, notification_for, offline, plan, target_of
from .ports import Entry, JobQueue, Notification, Outcome, PushProvider, Target
from .tally import OutcomeTally, outcomes

log = logging.getLogger("raychat.push")

_MAX_BREAKERS = 10_000          # webhook breakers are per receiving host: keep the map bounded
_IDLE_AFTER_ERROR_S = 1.0


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int = 64
    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    collapse_window_s: float = 10.0
    send_timeout_s: float = 10.0
    claim_every_s: float = 5.0      # how often to look for jobs of dead workers
    block_ms: int = 1000            # how long one read waits for new jobs

    @classmethod
    def from_settings(cls, s: Settings) -> "WorkerConfig":
        return cls(batch_size=s.push_batch_size, max_attempts=s.push_max_attempts,
                   backoff_base_s=s.push_backoff_base_s, backoff_cap_s=s.push_backoff_cap_s,
                   breaker_threshold=s.push_breaker_threshold, breaker_cooldown_s=s.push_breaker_cooldown_s,
                   collapse_window_s=s.push_collapse_window_s, send_timeout_s=s.push_send_timeout_s,
                   claim_every_s=min(5.0, s.push_visibility_timeout_s / 4))


class PushWorker:
    def __init__(self, queue: JobQueue, devices: Any, presence: Any, users: Any,
                 providers: Mapping[str, PushProvider], config: WorkerConfig, clock: Clock, consumer: str,
                 rand: Callable[[], float] = random.random, closing: tuple[Any, ...] = (),
                 tally: OutcomeTally | None = None):
        self.queue = queue
        self.devices = devices          # storage.ports.DeviceStore
        self.presence = presence        # storage.ports.PresenceStore
        self.users = users              # storage.ports.UserStore (display names), or None
        self.providers = dict(providers)
        self.config = config
        self.clock = clock
        self.consumer = consumer
        self.rand = rand
        self._closing = closing         # clients this worker owns: closed by close()
        self.stats: Counter[str] = Counter()
        self.tally = tally              # cluster-wide outcome counts for /metrics, or None
        self._tallied: Counter[str] = Counter()     # the outcomes of ``stats`` already added to it
        self._breakers: dict[str, CircuitBreaker] = {}
        self._next_claim = float("-inf")
        self._stopping = asyncio.Event()

    # ---- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Step until ``stop()``; a store outage only pauses it."""
        log.info("push worker %s started (providers: %s)", self.consumer, ", ".join(sorted(self.providers)) or "none")
        while not self._stopping.is_set():
            try:
                await self.step()
                await self.flush_outcomes()
            except Exception as exc:
                # A bug here would otherwise end the loop; jobs in hand stay pending and come back.
                self.stats["store_errors" if isinstance(exc, StoreError) else "loop_errors"] += 1
                if isinstance(exc, StoreError):
                    log.warning("push worker %s: queue unavailable: %r", self.consumer, exc)
                else:
                    log.exception("push worker %s: step failed", self.consumer)
                try:
                    await asyncio.wait_for(self._stopping.wait(), _IDLE_AFTER_ERROR_S)
                except asyncio.TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopping.set()

    async def flush_outcomes(self) -> None:
        """Add to the tally what was settled since the last flush (a failed flush is retried
        with the next, so nothing is lost while this worker lives)."""
        if self.tally is None:
            return
        now = outcomes(self.stats)
        delta = {k: n - self._tallied[k] for k, n in now.items() if n > self._tallied[k]}
        if delta:
            await self.tally.add(delta)
            self._tallied = now

    async def close(self) -> None:
        try:
            await self.flush_outcomes()
        except StoreError as exc:
            log.warning("push outcomes of %s not counted: %r", self.consumer, exc)
        for thing in (*self.providers.values(), *self._closing):
            try:
                await thing.close()
            except Exception as exc:    # closing is best effort: the process is going away
                log.warning("closing %r failed: %r", thing, exc)

    async def step(self) -> int:
        """One batch: returns how many jobs it handled."""
        cfg = self.config
        await self.queue.promote_due(self.clock.now(), cfg.batch_size)
        entries: list[Entry] = []
        if self.clock.monotonic() >= self._next_claim:
            self._next_claim = self.clock.monotonic() + cfg.claim_every_s
            entries = await self.queue.claim_stale(self.consumer, cfg.batch_size)
            self.stats["claimed"] += len(entries)
        if not entries:
            entries = await self.queue.read(self.consumer, cfg.batch_size, cfg.block_ms)
        # Message jobs of one conversation are expanded one after another, in stream order, so
        # the first message of a burst is the one its collapse window lets through; everything
        # else (other conversations, deliveries) runs side by side.
        lanes: dict[Any, list[Entry]] = {}
        for e in entries:
            key = e.job.get("conversation_id") if e.job.get("type") == "message" else id(e)
            lanes.setdefault(key, []).append(e)

        async def lane(items: list[Entry]) -> None:
            for e in items:
                await self.handle(e)

        await asyncio.gather(*(lane(items) for items in lanes.values()))
        return len(entries)

    async def handle(self, entry: Entry) -> None:
        """Handle and settle one job. Never raises: what cannot be settled stays pending."""
        job = entry.job
        try:
            kind = job.get("type")
            if kind == "message":
                await self._expand(entry)
            elif kind == "delivery":
                await self._deliver(entry)
            else:
                self.stats["dead_lettered"] += 1
                await self.queue.dead_letter(entry.entry_id, job, f"unknown job type {kind!r}")
        except StoreError as exc:
            # Left pending: after the visibility timeout some worker takes it again.
            self.stats["store_errors"] += 1
            log.warning("push job %s left for later: %r", job.get("id"), exc)
        except Exception as exc:
            log.exception("push job %s failed", job.get("id"))
            try:
                await self._failed(entry, f"bug: {type(exc).__name__}: {exc}")
            except StoreError:
                pass

    # ---- message jobs ------------------------------------------------------------------------
    async def _expand(self, entry: Entry) -> None:
        job, cfg = entry.job, self.config
        try:
            senders = {m["sender_id"] for m in job["messages"]}
            # Anyone but a lone sender may be a recipient of some message of the batch.
            candidates = [u for u in job["members"] if senders - {u}]
            away = offline(candidates, await self.presence.get(candidates)) if candidates else []
            self.stats["skipped_online"] += len(candidates) - len(away)
            devices = await self.devices.list_for_users(away) if away else []
            targets = []
            for d in devices:
                if d["platform"] in self.providers:
                    targets.append(Target(d["device_id"], d["user_id"], d["platform"], d["token"]))
                else:
                    self.stats[f"dropped_{d['platform']}_off"] += 1
            pairs = plan(job, away, targets, collapse=cfg.collapse_window_s > 0)
            names = {} if job["e2ee"] else await self._names({m["sender_id"] for m, _ in pairs})
        except StoreError as exc:
            await self._failed(entry, f"store unavailable: {exc}")
            return
        allowed = await self.queue.collapse([(t.device_id, job["conversation_id"]) for _, t in pairs],
                                            job["id"], cfg.collapse_window_s)
        deliveries = [delivery_job(job, t, notification_for(job, m, names.get(m["sender_id"])))
                      for (m, t), ok in zip(pairs, allowed) if ok]
        self.stats["collapsed"] += len(pairs) - len(deliveries)
        await self.queue.expand(entry.entry_id, deliveries)
        self.stats["expanded"] += 1

    async def _names(self, user_ids: set[str]) -> dict[str, str]:
        if self.users is None:
            return {}
        out = {}
        for uid in user_ids:        # the senders of one batch: one or a few
            user = await self.users.by_id(uid)
            if user and user.get("display_name"):
                out[uid] = user["display_name"]
        return out

    # ---- delivery jobs -----------------------------------------------------------------------
    async def _deliver(self, entry: Entry) -> None:
        job, cfg = entry.job, self.config
        provider = self.providers.get(job["platform"])
        if provider is None:
            # Turned off since the job was made: nothing could ever send it.
            self.stats[f"dropped_{job['platform']}_off"] += 1
            log.info("push to a %s device dropped: that provider is off", job["platform"])
            await self.queue.ack(entry.entry_id)
            return
        target = target_of(job)
        breaker = self._breaker(provider.breaker_key(target))
        permit = breaker.acquire()
        if permit is None:
            self.stats["deferred"] += 1
            await self._defer(entry, breaker)
            return
        try:
            outcome = await asyncio.wait_for(provider.send(target, Notification.from_dict(job["notification"])),
                                             cfg.send_timeout_s * 1.5)
        except asyncio.TimeoutError:
            outcome = Outcome.retry("send timed out")
        if outcome.kind != "retry":
            breaker.success(permit)
        if outcome.kind == "delivered":
            self.stats["delivered"] += 1
            await self.queue.ack(entry.entry_id)
        elif outcome.kind == "invalid_token":
            self.stats["invalid_tokens"] += 1
            log.info("push: removing %s device %s: %s", target.platform, target.device_id, outcome.detail)
            await self.devices.remove_token(target.platform, target.token)
            await self.queue.ack(entry.entry_id)
        elif outcome.kind == "rejected":
            self.stats["dead_lettered"] += 1
            await self.queue.dead_letter(entry.entry_id, job, f"rejected: {outcome.detail}")
        else:
            breaker.failure(permit)
            if permit.trial:
                # The provider is still down: this says nothing about the job, so no attempt used.
                self.stats["deferred"] += 1
                await self._defer(entry, breaker)
            else:
                await self._failed(entry, outcome.detail, outcome.retry_after_s)

    async def _defer(self, entry: Entry, breaker: CircuitBreaker) -> None:
        # Spread the deferred jobs a little, so they do not all come back in the same instant.
        due = self.clock.now() + breaker.wait_s() + self.rand() * breaker.cooldown_s / 10
        await self.queue.retry_later(entry.entry_id, entry.job, due)

    async def _failed(self, entry: Entry, reason: str, retry_after_s: float | None = None) -> None:
        """One attempt used: retry after a backoff, or dead-letter after the last."""
        job, cfg = entry.job, self.config
        used = int(job.get("attempt", 0)) + 1
        if used >= cfg.max_attempts:
            self.stats["dead_lettered"] += 1
            log.warning("push job %s dead-lettered after %d attempts: %s", job.get("id"), used, reason)
            await self.queue.dead_letter(entry.entry_id, job, f"{used} attempts; last: {reason}")
            return
        self.stats["retried"] += 1
        delay = retry_delay_s(used - 1, cfg.backoff_base_s, cfg.backoff_cap_s, self.rand, retry_after_s)
        await self.queue.retry_later(entry.entry_id, next_attempt(job), self.clock.now() + delay)

    def _breaker(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            if len(self._breakers) >= _MAX_BREAKERS:
                self._breakers = {k: b for k, b in self._breakers.items() if b.state != "closed"}
            cfg = self.config
            breaker = self._breakers[key] = CircuitBreaker(cfg.breaker_threshold, cfg.breaker_cooldown_s, self.clock)
        return breaker

    def breaker_states(self) -> dict[str, str]:
        return {k: b.state for k, b in self._breakers.items()}
