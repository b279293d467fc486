"""The fault suite's harness: SDK clients chatting through a fault, then the verdict.

    report = await run_fault(target, scale, "redis-restart", restart_redis)
    assert report.ok, report.explain()

``scale.clients`` SDK clients (raychat/client.py) in ``scale.conversations`` group
conversations keep sending, each with ``scale.window`` sends in flight, for the whole run:
before the fault, through it and after it. The SDK retries every send with its
client_msg_id until acked and resumes the socket after any cut; a send it gives up on with a
retryable code (``internal`` more than five times in a row) is sent again here with the same
client_msg_id, as an application would. ``fault(h)`` does the damage and calls ``h.began()``
and ``h.cleared()``; soak mode (``scale.soak_s``) repeats it until that much time has passed.

Then the senders finish what is in flight, the store is read through the resume feed and
``judge`` checks, per conversation: the store's seqs are 1..n; no client_msg_id is stored
twice; every acknowledged (client_msg_id -> seq) is stored at that seq; nothing is stored that
nobody was told was stored; every client's sequence from ``Connection.events()`` (the SDK's
deduped, ordered stream) equals the store's; and after each clear every client's first ack
came within ``FIRST_ACK_BOUND_S`` (the issue asks it of the first ack; each client is stricter). One line per run says what happened (``Report.line``).

``judge`` and ``Report`` are pure (no sockets, no clock) and unit-tested in
tests/faults/test_harness.py, so the checks are known to fail when they should.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import httpx

from raychat.client import RETRYABLE, ApiError, Backoff, Client, Connection, SessionClosed

FIRST_ACK_BOUND_S = 10.0        # issue 7: the first successful ack within 10 s after the fault clears
PASSWORD = "correct horse battery"
IN_FLIGHT_S = 2.0               # acks this soon after a fault began may be of writes done just before it

# Clients that come back quickly: the SDK's default backoff grows to 30 s, which after a 30 s
# outage would put a client's next try up to 30 s past the recovery. An application that wants
# to be back within seconds caps it lower, as here; a crowd still spreads out (the jitter).
FAST_BACKOFF = Backoff(base_s=0.1, factor=2.0, max_s=2.0, stable_s=5.0)


@dataclass(frozen=True)
class Target:
    """Where the clients go: a gateway's base URL (a Serve route prefix included)."""
    base_url: str


@dataclass(frozen=True)
class Scale:
    """How much traffic. The CI run is small and short; soak mode is many clients for long."""
    clients: int = 6
    conversations: int = 2
    window: int = 2               # sends in flight per client
    pace_s: float = 0.2           # pause between one sender's sends (jittered ±50 %)
    warmup_s: float = 2.0         # traffic before the (first) fault
    rest_s: float = 5.0           # traffic between faults, in soak mode
    soak_s: float = 0.0           # soak mode: repeat the fault until this long has passed
    settle_s: float = 90.0        # for sends in flight to be acked, and clients to catch up
    recover_s: float = 60.0       # for every client to get an ack after a clear

    @property
    def soak(self) -> bool:
        return self.soak_s > 0


# ---- the verdict (pure) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Cycle:
    """One fault: when it began and cleared (harness clock) and how the clients came back."""
    began_at: float
    cleared_at: float
    first_ack_s: float | None               # clear -> the first ack after it, any client
    slowest_client_s: float | None          # clear -> the last client's first ack after it
    others_worst_ack_s: float | None = None  # the slowest send of an unaffected client during the fault
    acks_during: int = 0                    # acks that arrived in (began + IN_FLIGHT_S, cleared)
    longest_silence_s: float = 0.0          # the longest time without any ack, from began to the first ack after


@dataclass
class Report:
    fault: str
    clients: int
    conversations: int
    sent: int
    acked: int
    retried: int
    lost: int
    duplicates: int
    stored: int
    cycles: list[Cycle] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def first_ack_after_clear(self) -> float | None:
        """The worst cycle's first ack after its clear (None: some cycle had none)."""
        values = [c.first_ack_s for c in self.cycles]
        return None if not values or None in values else max(values)  # type: ignore[type-var]

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        def s(v: float | None) -> str:
            return "none" if v is None else f"{v:.2f}s"
        slowest = [c.slowest_client_s for c in self.cycles]
        worst_client = None if not slowest or None in slowest else max(slowest)  # type: ignore[type-var]
        line = (f"fault={self.fault} sent={self.sent} acked={self.acked} retried={self.retried} "
                f"lost={self.lost} duplicates={self.duplicates} first_ack_after_clear={s(self.first_ack_after_clear)} "
                f"slowest_client_back={s(worst_client)} faults={len(self.cycles)} "
                f"acks_during_faults={sum(c.acks_during for c in self.cycles)} "
                f"longest_silence={max((c.longest_silence_s for c in self.cycles), default=0.0):.2f}s "
                f"stored={self.stored} "
                f"clients={self.clients} conversations={self.conversations}")
        others = [c.others_worst_ack_s for c in self.cycles if c.others_worst_ack_s is not None]
        if others:
            line += f" others_worst_ack={max(others):.2f}s"
        return line

    def explain(self) -> str:
        shown = self.problems[:20] + ([f"... and {len(self.problems) - 20} more"] if len(self.problems) > 20 else [])
        return self.line() + "\n  " + "\n  ".join(shown)


def judge(fault: str, *, stored: dict[str, list[dict[str, Any]]], sent: dict[str, str],
          acked: dict[str, tuple[str, int]], received: dict[str, tuple[str, list[dict[str, Any]]]],
          retried: int, cycles: list[Cycle], clients: int, first_ack_bound_s: float = FIRST_ACK_BOUND_S) -> Report:
    """The verdict on one run.

    ``stored``: cid -> the store's events in feed order. ``sent``: client_msg_id -> cid of every
    send started. ``acked``: client_msg_id -> (cid, seq) as the acks said. ``received``: client
    name -> (its cid, the events its Connection yielded for it, in order). ``lost`` counts acked
    sends the store does not have at their seq; ``duplicates`` counts client_msg_ids stored more
    than once plus events a client was handed twice.
    """
    problems: list[str] = []
    lost = duplicates = 0
    for cid, events in stored.items():
        seqs = [e["seq"] for e in events]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{cid}: the store's seqs are not 1..{len(seqs)} (a gap or a reuse): {_runs(seqs)}")
        counts = Counter(e.get("client_msg_id") for e in events if e.get("kind") == "message")
        for cmid, n in counts.items():
            if n > 1:
                duplicates += n - 1
                problems.append(f"{cid}: client_msg_id {cmid} stored {n} times")
    at = {(cid, e.get("client_msg_id")): e["seq"] for cid, events in stored.items() for e in events}
    for cmid, (cid, seq) in acked.items():
        where = at.get((cid, cmid))
        if where is None:
            lost += 1
            problems.append(f"{cid}: acked {cmid} (seq {seq}) is not in the store")
        elif where != seq:
            lost += 1
            problems.append(f"{cid}: acked {cmid} at seq {seq}, the store has it at {where}")
    unacked = [cmid for cmid in sent if cmid not in acked]
    if unacked:
        problems.append(f"{len(unacked)} sends never acked, e.g. {unacked[:3]}")
    for cid, events in stored.items():
        for e in events:
            cmid = e.get("client_msg_id")
            if e.get("kind") == "message" and cmid not in acked and cmid not in sent:
                problems.append(f"{cid}: seq {e['seq']} ({cmid}) stored, but nobody sent it")
    for name, (cid, events) in received.items():
        seqs = [e["seq"] for e in events]
        repeats = len(seqs) - len(set(seqs))
        if repeats:
            duplicates += repeats
            problems.append(f"{name}: handed {repeats} events twice")
        want = [(e["seq"], e.get("client_msg_id")) for e in stored.get(cid, [])]
        got = [(e["seq"], e.get("client_msg_id")) for e in events]
        if got != want:
            problems.append(f"{name}: its sequence of {cid} differs from the store's "
                            f"({len(got)} events, seqs {_runs(seqs)}; the store has {len(want)})")
    if not cycles:
        problems.append("no fault happened")
    for i, c in enumerate(cycles):
        if c.first_ack_s is None:
            problems.append(f"fault {i + 1}: no ack after it cleared")
        elif c.first_ack_s > first_ack_bound_s:
            problems.append(f"fault {i + 1}: the first ack came {c.first_ack_s:.1f} s after the clear "
                            f"(bound {first_ack_bound_s:.0f} s)")
        if c.slowest_client_s is None:
            problems.append(f"fault {i + 1}: some client never got an ack after the clear")
        elif c.slowest_client_s > first_ack_bound_s:
            problems.append(f"fault {i + 1}: a client's first ack came {c.slowest_client_s:.1f} s after the clear "
                            f"(bound {first_ack_bound_s:.0f} s for every client)")
    return Report(fault=fault, clients=clients, conversations=len(stored), sent=len(sent), acked=len(acked),
                  retried=retried, lost=lost, duplicates=duplicates,
                  stored=sum(len(v) for v in stored.values()), cycles=list(cycles), problems=problems)


def longest_silence(acks_at: list[float], began: float, cleared: float) -> float:
    """The longest stretch without an ack from ``began`` until the first ack after ``cleared``
    (or ``cleared``, if none came): how long the fault really stopped the traffic."""
    after = min((t for t in acks_at if t >= cleared), default=cleared)
    marks = sorted([began, after] + [t for t in acks_at if began < t < after])
    return max(b - a for a, b in zip(marks, marks[1:])) if len(marks) > 1 else 0.0


def _runs(seqs: list[int]) -> str:
    """1,2,3,5,6 -> '1-3,5-6' (a long sequence stays readable in a failure)."""
    if not seqs:
        return "none"
    out, start, prev = [], seqs[0], seqs[0]
    for s in seqs[1:] + [None]:  # type: ignore[list-item]
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ",".join(out)


# ---- the run ------------------------------------------------------------------------------------

@dataclass
class ChatClient:
    """One user: an SDK client, its realtime connection, and what happened to its sends."""
    name: str
    index: int
    client: Client
    cid: str = ""
    conn: Connection | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    acks_at: list[float] = field(default_factory=list)
    retried: int = 0                       # sends given up by the SDK and sent again here
    failures: list[str] = field(default_factory=list)


Fault = Callable[["Harness"], Awaitable[None]]


class Harness:
    def __init__(self, target: Target, scale: Scale, fault: str, *, clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None):
        self.target, self.scale, self.fault = target, scale, fault
        self.clock = clock
        self.rng = random.Random(seed)
        self.clients: list[ChatClient] = []
        self.cids: list[str] = []
        self.sent: dict[str, str] = {}                           # cmid -> cid
        self.acked: dict[str, tuple[str, int]] = {}              # cmid -> (cid, seq)
        self.latency: list[tuple[int, float, float]] = []        # (client index, first try at, seconds to ack)
        self.cycles: list[Cycle] = []
        self.affected: set[int] = set()     # clients the fault itself hits; "others" are the rest
        self._began: float | None = None
        self._cleared: float | None = None
        self._stop = asyncio.Event()
        self._senders: list[asyncio.Task] = []
        self._readers: list[asyncio.Task] = []

    # ---- what a fault calls -------------------------------------------------------------------
    def began(self) -> None:
        self._began = self.clock()

    def cleared(self) -> None:
        self._cleared = self.clock()

    # ---- set up -------------------------------------------------------------------------------
    async def setup(self) -> None:
        """Register the users, make the conversations, open every client's connection."""
        s = self.scale
        gate = asyncio.Semaphore(8)         # password hashing is the slow part; do not pile it up

        async def new(i: int) -> ChatClient:
            async with gate:
                client = Client(self.target.base_url, backoff=FAST_BACKOFF, rng=random.Random(self.rng.random()))
                name = f"f{uuid.uuid4().hex[:10]}"
                await client.register(name, PASSWORD)
                await client.login(name, PASSWORD)
                return ChatClient(name, i, client)

        self.clients = list(await asyncio.gather(*(new(i) for i in range(s.clients))))
        groups = [self.clients[k::s.conversations] for k in range(s.conversations)]
        for k, members in enumerate(groups):
            conv = await members[0].client.create_group(f"{self.fault}-{k}", [m.client.user_id for m in members[1:]])
            self.cids.append(conv["conversation_id"])
            for m in members:
                m.cid = conv["conversation_id"]

        async def connect(c: ChatClient) -> None:
            async with gate:
                c.conn = c.client.connect(since={c.cid: 0})
                await asyncio.wait_for(c.conn.start(), 60)

        await asyncio.gather(*(connect(c) for c in self.clients))
        loop = asyncio.get_running_loop()
        self._readers = [loop.create_task(self._read(c)) for c in self.clients]

    # ---- traffic ------------------------------------------------------------------------------
    def start_traffic(self) -> None:
        loop = asyncio.get_running_loop()
        self._senders = [loop.create_task(self._send_loop(c)) for c in self.clients for _ in range(self.scale.window)]

    async def _read(self, c: ChatClient) -> None:
        try:
            async for ev in c.conn.events():
                if ev["conversation_id"] == c.cid:
                    c.received.append(ev)
        except (ApiError, SessionClosed) as exc:
            c.failures.append(f"its connection ended: {exc!r}")

    async def _send_loop(self, c: ChatClient) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.scale.pace_s))     # not all in step
        while not self._stop.is_set():
            cmid = uuid.uuid4().hex
            self.sent[cmid] = c.cid
            started = self.clock()
            try:
                ack = await self._send_until_acked(c, cmid, f"{c.name} {len(self.sent)}")
            except (ApiError, SessionClosed) as exc:
                c.failures.append(f"send {cmid} failed for good: {exc!r}")
                return
            now = self.clock()
            self.acked[cmid] = (c.cid, ack.seq)
            c.acks_at.append(now)
            self.latency.append((c.index, started, now - started))
            await asyncio.sleep(self.scale.pace_s * self.rng.uniform(0.5, 1.5))

    async def _send_until_acked(self, c: ChatClient, cmid: str, body: str):
        while True:
            try:
                return await c.conn.send(c.cid, body, client_msg_id=cmid)
            except ApiError as exc:
                if exc.code not in RETRYABLE:
                    raise
                c.retried += 1      # the SDK gave up on a retryable answer; the send stays idempotent
                await asyncio.sleep(0.5)

    # ---- faults -------------------------------------------------------------------------------
    async def run(self, fault: Fault) -> None:
        """Traffic, then the fault (again and again in soak mode), each followed by recovery."""
        self.start_traffic()
        await asyncio.sleep(self.scale.warmup_s)
        end = self.clock() + self.scale.soak_s
        while True:
            self._began = self._cleared = None
            await fault(self)
            if self._cleared is None:
                raise RuntimeError(f"the {self.fault} fault never called cleared()")
            began = self._began if self._began is not None else self._cleared
            await self._recovered(self._cleared)
            self.cycles.append(self._cycle(began, self._cleared))
            if self.clock() + self.scale.rest_s >= end:
                return
            await asyncio.sleep(self.scale.rest_s)

    async def _recovered(self, cleared: float) -> None:
        """Until every client has had an ack after the clear (or recover_s passed)."""
        end = self.clock() + self.scale.recover_s
        while self.clock() < end:
            if all(any(t >= cleared for t in c.acks_at[-50:]) for c in self.clients):
                return
            await asyncio.sleep(0.1)

    def _cycle(self, began: float, cleared: float) -> Cycle:
        firsts = [next((t for t in c.acks_at if t >= cleared), None) for c in self.clients]
        known = [t - cleared for t in firsts if t is not None]
        others = [lat for i, at, lat in self.latency if i not in self.affected and began <= at <= cleared]
        during = sum(1 for c in self.clients for t in c.acks_at if began + IN_FLIGHT_S < t < cleared)
        return Cycle(began, cleared, min(known) if known else None,
                     max(known) if len(known) == len(firsts) else None,
                     max(others) if others and self.affected else None, during,
                     longest_silence([t for c in self.clients for t in c.acks_at], began, cleared))

    # ---- the end ------------------------------------------------------------------------------
    async def settle(self) -> Report:
        """Stop new sends, let the ones in flight be acked, read the store, let clients catch up."""
        self._stop.set()
        done, pending = await asyncio.wait(self._senders, timeout=self.scale.settle_s) if self._senders else ((), ())
        for t in pending:
            t.cancel()
        stored = {cid: await self._stored(cid) for cid in self.cids}
        end = self.clock() + self.scale.settle_s
        while self.clock() < end and any(len(c.received) < len(stored[c.cid]) for c in self.clients):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)      # anything a client would wrongly get after catching up, it gets now
        report = judge(self.fault, stored=stored, sent=self.sent, acked=self.acked,
                       received={c.name: (c.cid, list(c.received)) for c in self.clients},
                       retried=sum(c.retried + (c.conn.stats["send_retries"] if c.conn else 0) for c in self.clients),
                       cycles=self.cycles, clients=len(self.clients))
        for c in self.clients:
            report.problems += [f"{c.name}: {f}" for f in c.failures]
        for t in [*done, *self._readers]:
            if t.done() and not t.cancelled() and t.exception() is not None:
                report.problems.append(f"a client task crashed: {t.exception()!r}")
        if pending:
            report.problems.append(f"{len(pending)} senders were still waiting for an ack after {self.scale.settle_s:.0f} s")
        return report

    async def _stored(self, cid: str) -> list[dict[str, Any]]:
        """The store's events of ``cid`` from the resume feed, read as a member (retried while the
        gateway is still recovering: the check must not fail on a read)."""
        client = next(c.client for c in self.clients if c.cid == cid)
        for attempt in range(20):
            try:
                events, after = [], 0
                while True:
                    page = await client.events_after(cid, after, limit=500)
                    events += page["events"]
                    if not page["has_more"] or not page["events"]:
                        return events
                    after = page["events"][-1]["seq"]
            except (ApiError, httpx.TransportError):
                if attempt == 19:
                    raise
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for t in self._senders + self._readers:
            t.cancel()
        for c in self.clients:
            if c.conn is not None:
                await c.conn.close()
            await c.client.aclose()


async def run_fault(target: Target, scale: Scale, name: str, fault: Fault,
                    after: Callable[[Harness, Report], Awaitable[None]] | None = None) -> Report:
    """Set up, run ``fault`` under traffic, settle and judge; prints and returns the report.
    ``after`` runs once the report is made, while every client is still connected (for the
    checks of one fault only); its AssertionError is added to the report's problems."""
    h = Harness(target, scale, name)
    try:
        await h.setup()
        await h.run(fault)
        report = await h.settle()
        if after is not None:
            try:
                await after(h, report)
            except AssertionError as exc:
                report.problems.append(str(exc))
    finally:
        await h.close()
    REPORTS.append(report.line())
    print(report.line(), flush=True)
    return report


REPORTS: list[str] = []     # every line of this run, for the terminal summary (tests/fixtures_faults.py)
