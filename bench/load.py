"""The load generator: ``python -m bench.load --target raychat|socketio|starlette|websockets
--url URL --scenario NAME [...]``.

One asyncio process plays every client, over thousands of sockets (the file-descriptor limit is
raised to its hard maximum). Scenarios:

    direct     1:1 conversations (200 users in 100 pairs)
    group10    groups of 10 (200 users, 20 groups)
    group100   groups of 100 (200 users, 2 groups)
    group1000  one group of 1,000 (1,000 users)
    storm      groups of 10 at a fixed rate; mid-window 10% of the sockets are cut at once and
               reconnect at once (raychat resumes with ``hello.since``; the peers have no resume)
    idle10k    10,000 idle sockets (raychat: 1,000 users × 10 devices) held for ``--hold`` s:
               how many opened, RSS, and how many still answer a ping at the end

Each load scenario is a ladder of offered rates (deliveries/s = messages/s × group size). By
default it finds the rate: it doubles the offered rate until a step misses (p99 delivery latency
over 100 ms, or any message lost, refused, unanswered or duplicated); if the first step misses it
halves instead, at most four times. A miss on latency alone is run again once before it counts
(another process's spike on a shared machine). The headline is the highest measured deliveries/s of a step that held.
``--rates`` runs given rates instead. Output: a JSON report (``--json-out``, else stdout); each
step is also logged as one line on stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import resource
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psutil

from .load_run import Runner, Sock
from .load_wire import make_wire
from .procs import rss_bytes
from .stats import summary_ms

log = logging.getLogger("bench.load")

P99_TARGET_MS = 100.0
MIN_WINDOW_MESSAGES = 4
HALVINGS = 4                   # below the first rate, down to 1/16 of it
MAX_WINDOW_S = 20.0
MB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int
    group_size: int          # members per conversation; 0 for idle
    start_rate: float        # offered deliveries/s of the first step
    fixed: bool = False      # one step at start_rate, no ladder (the storm)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("direct", 200, 2, 200),
    Scenario("group10", 200, 10, 500),
    Scenario("group100", 200, 100, 1000),
    Scenario("group1000", 1000, 1000, 2000),
    Scenario("storm", 200, 10, 500, fixed=True),
    Scenario("idle10k", 1000, 0, 0),
)}
IDLE_DEVICES_PER_USER = 10     # raychat: sockets per user (under its ws_connections_per_user of 20)
STORM_FRACTION = 0.1


def groups_for(sc: Scenario, users: int) -> list[list[int]]:
    """Consecutive users form each conversation; leftovers (users % group_size) stay out."""
    n = sc.group_size
    return [list(range(lo, lo + n)) for lo in range(0, users - n + 1, n)]


def sender_order(socks_by_member: dict[int, Sock], groups: list[list[int]], cids: list[str]) -> list[tuple[Sock, str]]:
    """Round-robin over conversations first, then over each one's members: consecutive
    messages go to different conversations, and every member sends in turn."""
    order = []
    for j in range(max(len(g) for g in groups)):
        for g, cid in zip(groups, cids):
            if j < len(g) and g[j] in socks_by_member:
                order.append((socks_by_member[g[j]], cid))
    return order


def passed(step: dict[str, Any]) -> bool:
    d = step["delivery_ms"]
    return (d.get("n", 0) > 0 and d["p99"] <= P99_TARGET_MS and step["lost"] == 0 and step["duplicates"] == 0
            and not step["refused"] and step["unanswered"] == 0)


class RssSampler:
    """Summed RSS of the server's process trees, once a second, in a thread (psutil blocks)."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.samples: list[int] = []
        self.procs = 0
        self._task: asyncio.Task | None = None

    async def sample(self) -> int:
        if not self.pids:
            return 0
        rss, self.procs = await asyncio.to_thread(rss_bytes, self.pids)
        self.samples.append(rss)
        return rss

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self.sample()
                await asyncio.sleep(1.0)
        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
        last = await self.sample()
        if not self.pids:
            return {}
        return {"max_mb": round(max(self.samples) / MB, 1), "end_mb": round(last / MB, 1), "processes": self.procs}


async def run_load(wire, sc: Scenario, args: argparse.Namespace, server_pids: list[int]) -> dict[str, Any]:
    users = args.users or sc.users
    groups = groups_for(sc, users)
    t = time.perf_counter()
    members, cids = await wire.prepare(users, groups)
    setup_s = time.perf_counter() - t
    runner = Runner(wire, run_id=uuid.uuid4().hex[:6], server_pids=server_pids)
    rss = RssSampler(server_pids)
    rss.start()
    out: dict[str, Any] = {"users": users, "conversations": len(groups), "group_size": sc.group_size,
                           "setup_s": round(setup_s, 1)}
    try:
        in_groups = [members[i] for g in groups for i in g]
        out["connect"] = await runner.connect(in_groups, track_order=sc.name == "storm")
        by_member = {s.member.index: s for s in runner.socks}
        if not by_member:
            raise RuntimeError(f"no socket opened: {out['connect']['failed']}")
        order = sender_order(by_member, groups, cids)
        members_of = {cid: len(g) for g, cid in zip(groups, cids)}
        steps: list[dict[str, Any]] = []
        step_no = 0

        async def at(rate: float, during=None) -> dict[str, Any]:
            nonlocal step_no
            step_no += 1
            mps = rate / sc.group_size
            # A big group at a low rate sends few messages: measure at least MIN_WINDOW_MESSAGES.
            window = min(MAX_WINDOW_S, max(args.window, MIN_WINDOW_MESSAGES / mps))
            r = await runner.step(step_no, order, members_of, messages_per_s=mps,
                                  warmup_s=args.warmup, window_s=window, drain_s=args.drain, during=during)
            r["passed"] = passed(r)
            steps.append(r)
            d = r["delivery_ms"]
            log.info("%s %s: offered %.0f deliveries/s -> %.0f/s, p50 %s p99 %s ms, lost %d dup %d, "
                     "client %.2f cores, server %.2f cores: %s", wire.name, sc.name, rate, r["deliveries_per_s"],
                     d.get("p50"), d.get("p99"), r["lost"], r["duplicates"], r["client_cores"], r["server_cores"],
                     "held" if r["passed"] else "missed")
            return r

        if sc.name == "storm":
            out["storm"] = await storm(runner, at, sc)
        elif args.rates:
            for rate in args.rates:
                await at(rate)
        else:
            await find_rate(at, sc.start_rate, args.max_steps)
        out["steps"] = steps
        good = [s for s in steps if s["passed"]]
        best = max(good, key=lambda s: s["deliveries_per_s"]) if good else None
        out["best"] = None if best is None else {
            "deliveries_per_s": best["deliveries_per_s"], "offered_deliveries_per_s": best["offered_deliveries_per_s"],
            "delivery_p50_ms": best["delivery_ms"]["p50"], "delivery_p99_ms": best["delivery_ms"]["p99"],
            "ack_p50_ms": best["ack_ms"]["p50"] if isinstance(best["ack_ms"], dict) else "n/a",
            "server_cores": best["server_cores"], "client_cores": best["client_cores"]}
        out["closes"] = {str(k): v for k, v in Counter(c for s in runner.socks for c in s.closes).items()}
        out["reconnects"] = len(runner.reconnect_times)
        out["unknown_events"] = runner.unknown
        out["error_frames"] = dict(runner.errors)
    finally:
        out["server_rss"] = await rss.stop()
        await runner.close()
    return out


async def find_rate(at, start: float, max_steps: int) -> None:
    """Double from ``start`` while steps hold; if the first misses, halve (at most HALVINGS times,
    and fewer than ``max_steps``).
    A first or climbing step that misses on latency alone is run once more before it counts: on
    a shared machine one spike from another process can push a p99 over the line, and the ladder
    stops at its first miss. A loss, refusal or duplicate is never retried away; nor is a miss on
    the way down (the next, lower step follows anyway)."""
    async def attempt(rate: float, confirm: bool = True) -> bool:
        r = await at(rate)
        if r["passed"] or not confirm or not latency_only_miss(r):
            return r["passed"]
        again = await at(rate)
        again["retry_of_a_latency_miss"] = True
        return again["passed"]

    rate = start
    if await attempt(rate):
        for _ in range(max_steps - 1):
            rate *= 2
            if not await attempt(rate):
                return
    else:
        for _ in range(min(HALVINGS, max_steps - 1)):
            rate /= 2
            if await attempt(rate, confirm=False):
                return


def latency_only_miss(step: dict[str, Any]) -> bool:
    return (not step["passed"] and step["lost"] == 0 and step["duplicates"] == 0 and not step["refused"]
            and step["unanswered"] == 0)


async def storm(runner: Runner, at, sc: Scenario) -> dict[str, Any]:
    """One step at the scenario's rate; a third into the window, every tenth socket is cut and
    reconnects at once. Losses and duplicates are counted as in any step (over every socket),
    and apart for the cut sockets."""
    cut = runner.socks[::round(1 / STORM_FRACTION)]
    info: dict[str, Any] = {}

    async def during(window_start: float, window_end: float) -> None:
        await asyncio.sleep(max(0.0, window_start + (window_end - window_start) / 3 - time.perf_counter()))
        before = len(runner.reconnect_times)
        info["cut_at_s_into_window"] = round(time.perf_counter() - window_start, 2)
        runner.drop(cut)
        deadline = time.perf_counter() + 30
        while len(runner.reconnect_times) - before < len(cut) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        info["reconnected"] = len(runner.reconnect_times) - before

    r = await at(sc.start_rate, during)
    lost_on_cut = runner.lost_on(cut, step=max(runner.steps))
    info.update({"sockets_cut": len(cut), "resume": "hello.since (from the SDK's EventOrder)" if runner.wire.has_resume
                 else "none: a new socket; what was sent meanwhile is not replayed",
                 "reconnect_ms": summary_ms(runner.reconnect_times), "lost_on_cut_sockets": lost_on_cut,
                 "lost_on_other_sockets": r["lost"] - lost_on_cut,
                 "redelivered_after_reconnect": r["redelivered_after_reconnect"], "duplicates": r["duplicates"]})
    return info


# Handshakes that may fail before idle10k stops trying the rest (and reports them as not tried).
IDLE_GIVE_UP_AFTER = 200


async def run_idle(wire, args: argparse.Namespace, server_pids: list[int]) -> dict[str, Any]:
    sockets = args.sockets
    per_user = IDLE_DEVICES_PER_USER if wire.name == "raychat" else 1
    users = math.ceil(sockets / per_user)
    t = time.perf_counter()
    members, _ = await wire.prepare(users, [])
    setup_s = time.perf_counter() - t
    runner = Runner(wire, run_id=uuid.uuid4().hex[:6], server_pids=server_pids, reconnect=False)
    rss = RssSampler(server_pids)
    client = psutil.Process()
    before = await rss.sample()
    client_before = client.memory_info().rss
    out: dict[str, Any] = {"sockets_requested": sockets, "users": users, "sockets_per_user": per_user,
                           "setup_s": round(setup_s, 1), "hold_s": args.hold}
    try:
        out["connect"] = await runner.connect(members[:users], per_member=per_user,
                                             give_up_after=IDLE_GIVE_UP_AFTER)
        held = len(runner.socks)
        after = await rss.sample()
        rss.start()
        await asyncio.sleep(args.hold)
        out["closed_during_hold"] = sum(1 for s in runner.socks if not s.live.is_set())
        out["heartbeat"] = await runner.heartbeat(timeout_s=30.0)
        out["accepted"] = held
        out["held_and_answering"] = out["heartbeat"]["answered"]
        out["server_rss_mb"] = {"before": round(before / MB, 1), "connected": round(after / MB, 1)}
        out["server_rss_bytes_per_socket"] = round((after - before) / held) if held else None
        out["client_rss_bytes_per_socket"] = round((client.memory_info().rss - client_before) / held) if held else None
        out["close_codes"] = {str(k): v for k, v in Counter(c for s in runner.socks for c in s.closes).items()}
    finally:
        out["server_rss"] = await rss.stop()
        await runner.close()
    return out


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, choices=["raychat", "socketio", "starlette", "websockets"])
    p.add_argument("--url", required=True, help="raychat: http://host:port; a peer: ws://host:port")
    p.add_argument("--scenario", required=True, help=f"comma-separated: {', '.join(SCENARIOS)}")
    p.add_argument("--rates", default="", help="offered deliveries/s to run, comma-separated (default: find the rate)")
    p.add_argument("--max-steps", type=int, default=7, help="steps of the find-the-rate ladder at most")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured window")
    p.add_argument("--window", type=float, default=4.0, help="seconds measured per step")
    p.add_argument("--drain", type=float, default=5.0, help="seconds at most to wait for stragglers after a step")
    p.add_argument("--users", type=int, default=0, help="override the scenario's number of users")
    p.add_argument("--sockets", type=int, default=10_000, help="idle10k: sockets to open")
    p.add_argument("--hold", type=float, default=30.0, help="idle10k: seconds to hold them")
    p.add_argument("--quick", action="store_true", help="short steps, short ladder, 1,000 idle sockets for 3 s")
    p.add_argument("--server-pid", type=int, action="append", default=[],
                   help="a root pid of the server (repeat for its stores): RSS and CPU are read over their trees")
    p.add_argument("--mongodb-uri", help="raychat: its store, where the benchmark's users are made")
    p.add_argument("--mongodb-db", help="raychat: RAYCHAT_MONGODB_DB of the server")
    p.add_argument("--jwt-secret", help="raychat: RAYCHAT_JWT_SECRET of the server (to sign the users' tokens)")
    p.add_argument("--json-out", help="write the report here (default: stdout)")
    p.add_argument("--no-compression", action="store_true",
                   help="a diagnostic: do not offer permessage-deflate (real clients, browsers included, do)")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.window, args.drain, args.max_steps = 0.5, 2.0, 3.0, min(args.max_steps, 3)
        args.sockets, args.hold = min(args.sockets, 1000), 3.0
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}: choose from {', '.join(SCENARIOS)}")
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from . import load_wire
    load_wire.COMPRESSION[0] = None if args.no_compression else "deflate"
    wire = make_wire(args.target, args.url, uuid.uuid4().hex[:6], mongodb_uri=args.mongodb_uri,
                     mongodb_db=args.mongodb_db, jwt_secret=args.jwt_secret)
    report: dict[str, Any] = {"target": args.target, "url": args.url, "fd_limit": raise_fd_limit(),
                              "loadavg_start": [round(x, 2) for x in psutil.getloadavg()],
                              "settings": {k: getattr(args, k) for k in ("warmup", "window", "drain", "max_steps",
                                                                          "sockets", "hold", "quick",
                                                                          "no_compression")},
                              "scenarios": {}}
    for name in args.scenarios:
        t = time.perf_counter()
        sc = SCENARIOS[name]
        if name == "idle10k":
            result = await run_idle(wire, args, args.server_pid)
        else:
            result = await run_load(wire, sc, args, args.server_pid)
        result["wall_s"] = round(time.perf_counter() - t, 1)
        report["scenarios"][name] = result
    report["loadavg_end"] = [round(x, 2) for x in psutil.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2, default=str)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
