"""The load generator's engine: sockets, the open-loop sender, and the ledger that turns frames
into latencies, losses and duplicates. Scenarios (bench/load.py) are built from its three verbs:
``connect``, ``step`` (one offered rate: warm-up, measured window, drain) and ``close``.

Times are ``time.perf_counter()`` of this one process. A message's id carries the time it was
*scheduled* (``<run>.<step>.<k>.<ns>``): the sender is open-loop, so latency is measured from
when the message was due, and a client that falls behind shows up as latency rather than hiding
it (``send_lag_ms`` says by how much the client itself was late).

Counting, per socket (one simulated device): the first copy of a message is a delivery; the same
message again on the same connection is a **duplicate** (a bug); again on a later connection of
that socket, after a reconnect, is **redelivered** (expected from a resume: clients dedupe). A
message the server took (a peer: written to the socket; raychat: acknowledged, or delivered to
anyone) that some member socket never got by the end of the drain is **lost**, one per missing
(message, socket). raychat sends that got an ``error`` are **refused**; ones that got neither an
ack nor an error, nor reached anyone, are **unanswered**.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State

from raychat.client import EventOrder

from .load_wire import Member, Wire
from .procs import CpuMeter
from .stats import percentile, summary_ms

log = logging.getLogger("bench.load")

BODY_PAD = "x" * 48            # a short chat line
CONNECT_CONCURRENCY = 64       # handshakes in flight at once
RECONNECT_PAUSE_S = 0.2
STALL_S = 3.0                  # a drain with no progress for this long is over


@dataclass(eq=False)
class Sock:
    """One simulated device: a member's socket, reopened (with resume, where the target has it)
    whenever it drops. ``got`` maps each message id first received to the connection number."""
    member: Member
    ws: Any = None
    conn: int = 0
    got: dict[str, int] = field(default_factory=dict)
    order: EventOrder | None = None
    live: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    reader: asyncio.Task | None = None
    closes: list[int] = field(default_factory=list)
    pongs: int = 0
    pong: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class Sent:
    cid: str
    t_due: float
    expected: int
    step: int
    in_window: bool
    t_ack: float | None = None
    receipts: int = 0
    refused: str | None = None
    ws: Any = None          # the connection it left on: an ack cannot come once that one is cut

    def ack_pending(self) -> bool:
        """Still waiting for an ack that can come: a cut socket's acks are gone with it (the
        message itself is delivered, and a resumed sender sees it in its replay)."""
        return self.t_ack is None and (self.ws is None or self.ws.state is State.OPEN)


@dataclass
class StepStats:
    latencies: list[float] = field(default_factory=list)
    window_arrivals: int = 0
    duplicates: int = 0
    redelivered: int = 0


class Runner:
    def __init__(self, wire: Wire, *, run_id: str, server_pids: list[int] | None = None, reconnect: bool = True):
        self.wire = wire
        self.run_id = run_id
        self.server_pids = list(server_pids or [])     # whose CPU each window reports
        self.reconnect = reconnect
        self.socks: list[Sock] = []
        self.sent: dict[str, Sent] = {}
        self.steps: dict[int, StepStats] = {}
        self.window = (0.0, 0.0)
        self.unknown = 0
        self.errors: Counter = Counter()
        self.connect_failures: Counter = Counter()
        self.reconnect_times: list[float] = []
        self._tasks: set[asyncio.Task] = set()

    # ---- sockets -----------------------------------------------------------------------------
    async def connect(self, members: list[Member], per_member: int = 1, *, track_order: bool = False,
                      concurrency: int = CONNECT_CONCURRENCY, give_up_after: int | None = None) -> dict[str, Any]:
        """Open ``per_member`` sockets per member, ``concurrency`` handshakes at a time. A socket
        that fails to open is counted by reason and left out. With ``give_up_after``, once that
        many have failed the rest are not tried: a server that stopped accepting (a full front
        door holds handshakes until they time out) would otherwise cost a timeout per
        ``concurrency`` sockets left, minutes for thousands."""
        sem = asyncio.Semaphore(concurrency)
        times: list[float] = []

        async def one(m: Member) -> Sock | None:
            s = Sock(m, order=EventOrder(user_id=m.user_id) if track_order else None)
            async with sem:
                if give_up_after is not None and sum(self.connect_failures.values()) >= give_up_after:
                    self.connect_failures[f"not tried: {give_up_after} handshakes had failed"] += 1
                    return None
                t = time.perf_counter()
                try:
                    s.ws = await self.wire.open(m)
                except (OSError, WebSocketException, asyncio.TimeoutError, ConnectionError, ValueError) as exc:
                    self.connect_failures[_reason(exc)] += 1
                    return None
                times.append(time.perf_counter() - t)
            s.conn = 1
            s.live.set()
            s.reader = asyncio.get_running_loop().create_task(self._read(s))
            return s

        t0 = time.perf_counter()
        opened = await asyncio.gather(*(one(m) for m in members for _ in range(per_member)))
        self.socks += [s for s in opened if s is not None]
        return {"requested": len(members) * per_member, "opened": sum(1 for s in opened if s is not None),
                "failed": dict(self.connect_failures), "seconds": round(time.perf_counter() - t0, 2),
                "handshake_ms": summary_ms(times)}

    async def close(self) -> None:
        for s in self.socks:
            s.closing = True
        sem = asyncio.Semaphore(256)

        async def one(s: Sock) -> None:
            async with sem:
                try:
                    await asyncio.wait_for(s.ws.close(), 5)
                except (asyncio.TimeoutError, OSError, WebSocketException):
                    s.ws.transport.abort()

        await asyncio.gather(*(one(s) for s in self.socks if s.ws is not None))
        readers = [s.reader for s in self.socks if s.reader is not None]
        if readers:
            await asyncio.wait(readers, timeout=10)
        for t in list(self._tasks):
            t.cancel()

    def drop(self, socks: list[Sock]) -> None:
        """Cut these sockets at once, as a network failure would (no close handshake)."""
        for s in socks:
            s.live.clear()
            s.ws.transport.abort()

    async def _read(self, s: Sock) -> None:
        while True:
            ws = s.ws
            try:
                async for raw in ws:
                    self._on_frame(s, raw)
            except ConnectionClosed:
                pass
            s.live.clear()
            if s.closing:
                return
            s.closes.append(ws.close_code or 1006)
            if not self.reconnect:
                return
            t = time.perf_counter()
            while not s.closing:
                try:
                    since = s.order.since() if (s.order is not None and self.wire.has_resume) else None
                    s.ws = await self.wire.open(s.member, since)
                    break
                except (OSError, WebSocketException, asyncio.TimeoutError, ConnectionError) as exc:
                    log.info("reopening a socket of %s failed: %s", s.member.user_id, _reason(exc))
                    await asyncio.sleep(RECONNECT_PAUSE_S)
            if s.closing:
                return
            self.reconnect_times.append(time.perf_counter() - t)
            s.conn += 1
            s.live.set()

    def _on_frame(self, s: Sock, raw: str | bytes) -> None:
        now = time.perf_counter()
        f = self.wire.parse(raw)
        kind = f.kind
        if kind == "event":
            mid = f.msg_id
            if s.order is not None and f.seq is not None:
                s.order.accept({"conversation_id": f.cid, "seq": f.seq})
            sent = self.sent.get(mid) if mid else None
            if sent is None:
                self.unknown += 1      # not ours (e.g. a membership event), or from an earlier run
                return
            stats = self.steps[sent.step]
            prev = s.got.get(mid)
            if prev is None:
                s.got[mid] = s.conn
                sent.receipts += 1
                if sent.in_window:
                    stats.latencies.append(now - sent.t_due)
                if self.window[0] <= now <= self.window[1]:
                    stats.window_arrivals += 1
            elif prev == s.conn:
                stats.duplicates += 1
            else:
                stats.redelivered += 1
                s.got[mid] = s.conn
        elif kind == "ack":
            sent = self.sent.get(f.msg_id or "")
            if sent is not None and sent.t_ack is None:
                sent.t_ack = now
        elif kind == "error":
            self.errors[f.code or "?"] += 1
            sent = self.sent.get(f.msg_id or "")
            if sent is not None:
                sent.refused = f.code or "?"
        elif kind == "pong":
            s.pongs += 1
            s.pong.set()
        elif kind == "reply":
            self._spawn(_send_quietly(s.ws, f.reply))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- load --------------------------------------------------------------------------------
    async def step(self, step: int, senders: list[tuple[Sock, str]], members_of: dict[str, int], *,
                   messages_per_s: float, warmup_s: float, window_s: float, drain_s: float,
                   during: Any = None) -> dict[str, Any]:
        """One offered rate: messages go out round-robin over ``senders`` (socket, conversation)
        at ``messages_per_s`` for ``warmup_s + window_s``; those due inside the window are
        measured. Then wait up to ``drain_s`` for every message to reach every member.
        ``during(window_start, window_end)`` is a coroutine run alongside (the storm's drop)."""
        stats = self.steps[step] = StepStats()
        start = time.perf_counter() + 0.1
        window_start = start + warmup_s
        end = window_start + window_s
        self.window = (window_start, end)
        period = 1.0 / messages_per_s
        lag: list[float] = []
        skipped = 0
        mine: list[Sent] = []

        async def sender() -> None:
            nonlocal skipped
            k = 0
            offset = random.randrange(len(senders))
            while True:
                due = start + k * period
                if due >= end:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                s, cid = senders[(offset + k) % len(senders)]
                k += 1
                if not s.live.is_set():
                    skipped += 1          # its socket is down (the storm): the user cannot send
                    continue
                mid = f"{self.run_id}.{step}.{k}.{int(due * 1e9)}"
                sent = Sent(cid, due, members_of[cid], step, due >= window_start)
                self.sent[mid] = sent
                sent.ws = s.ws
                try:
                    await s.ws.send(self.wire.send_frame(s.member, cid, mid, f"{mid} {BODY_PAD}"))
                except ConnectionClosed:
                    del self.sent[mid]
                    skipped += 1
                    continue
                mine.append(sent)
                lag.append(time.perf_counter() - due)

        async def measure() -> dict[str, float]:
            await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
            meter = CpuMeter(self.server_pids).start()
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            return meter.stop()

        extra = [during(window_start, end)] if during is not None else []
        results = await asyncio.gather(sender(), measure(), *extra)
        cpu = results[1]
        sent_end = time.perf_counter()
        drain = await self._drain(mine, sent_end + drain_s)
        has_ack = self.wire.has_ack
        lost = sum(m.expected - m.receipts for m in mine if self.accepted(m))
        refused = Counter(m.refused for m in mine if m.refused is not None)
        unanswered = sum(1 for m in mine if m.refused is None and not self.accepted(m))
        window_msgs = [m for m in mine if m.in_window]
        acks = [m.t_ack - m.t_due for m in window_msgs if m.t_ack is not None]
        lag.sort()
        return {
            "messages_per_s": round(messages_per_s, 2),
            "offered_deliveries_per_s": round(messages_per_s * _mean([members_of[c] for _, c in senders]), 1),
            "window_s": window_s,
            "messages_sent": len(mine),
            "messages_skipped_socket_down": skipped,
            "deliveries_per_s": round(stats.window_arrivals / window_s, 1),
            "delivery_ms": summary_ms(stats.latencies),
            "ack_ms": summary_ms(acks) if has_ack else "n/a",
            "lost": lost,
            "duplicates": stats.duplicates,
            "redelivered_after_reconnect": stats.redelivered,
            "refused": dict(refused),
            "unanswered": unanswered,
            "drain": drain,
            "send_lag_ms": {"p50": round(percentile(lag, 50) * 1000, 2), "p99": round(percentile(lag, 99) * 1000, 2),
                            "max": round(lag[-1] * 1000, 2)} if lag else {},
            **cpu,
        }

    def accepted(self, m: Sent) -> bool:
        """The server took it: a peer, once written; raychat, once acknowledged or delivered."""
        return m.refused is None and (not self.wire.has_ack or m.t_ack is not None or m.receipts > 0)

    def lost_on(self, socks: list[Sock], step: int) -> int:
        """(message, socket) pairs of ``step`` that these sockets should have and never got."""
        mine = [(mid, m) for mid, m in self.sent.items() if m.step == step and self.accepted(m)]
        return sum(1 for s in socks for mid, m in mine if m.cid in s.member.groups and mid not in s.got)

    async def _drain(self, mine: list[Sent], deadline: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        has_ack = self.wire.has_ack
        progress, moved = -1, t0
        while True:
            if all(m.refused is not None or (m.receipts >= m.expected and (not has_ack or not m.ack_pending()))
                   for m in mine):
                return {"end": "complete", "s": round(time.perf_counter() - t0, 2)}
            now = time.perf_counter()
            p = sum(m.receipts for m in mine) + sum(1 for m in mine if m.t_ack is not None or m.refused)
            if p != progress:
                progress, moved = p, now
            elif now - moved > STALL_S:
                return {"end": "stalled", "s": round(now - t0, 2)}
            if now > deadline:
                return {"end": "timed out", "s": round(now - t0, 2)}
            await asyncio.sleep(0.05)

    # ---- idle --------------------------------------------------------------------------------
    async def heartbeat(self, timeout_s: float, in_flight: int = 200) -> dict[str, Any]:
        """Ping every socket that is still open, ``in_flight`` at a time (a client pings on its
        own schedule, never all at once), each waiting up to ``timeout_s`` for its pong: how many
        sockets still answer, and how long the round took."""
        live = [s for s in self.socks if s.live.is_set()]
        for s in live:
            s.pong.clear()
        sem = asyncio.Semaphore(in_flight)
        waits: list[float] = []

        async def ping(s: Sock) -> bool:
            async with sem:
                t = time.perf_counter()
                try:
                    await s.ws.send(self.wire.ping_frame())
                    await asyncio.wait_for(s.pong.wait(), timeout_s)
                except (ConnectionClosed, asyncio.TimeoutError):
                    return False
                waits.append(time.perf_counter() - t)
                return True

        t = time.perf_counter()
        answered = sum(await asyncio.gather(*(ping(s) for s in live)))
        return {"open": len(live), "answered": answered, "seconds": round(time.perf_counter() - t, 2),
                "in_flight": in_flight, "ping_pong_ms": summary_ms(waits)}


async def _send_quietly(ws: Any, text: str) -> None:
    try:
        await ws.send(text)
    except ConnectionClosed:
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n")[0][:80]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0
