"""Virtual conversation actors in one process: memory per idle actor and activation latency.

Builds the real runtime a host builds (``Registry`` + ``ConversationActor`` + ``ActorEnv``
over ``MongoStores`` and ``RedisPresence``), with a ``FakeClock`` so passivation is driven
by hand, and fan-out a no-op. One conversation is made for real (created by the store, one
send, progress saved, passivated) and its documents cloned in bulk: real sends cost ~8 ms
to ~60 ms each on SecantusDB (see README), too slow for thousands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import secrets
import sys
import time
import tracemalloc
import types
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from pymongo import AsyncMongoClient

from actors.conversation import ConversationActor
from actors.conversation_state import SendCommand
from actors.env import ActorEnv
from actors.registry import PassivationReason, Registry
from raychat.clock import FakeClock
from raychat.config import Settings
from storage.mongo import MongoStores
from storage.redis_store import RedisPresence

from .stats import summary_ms

IDLE_AFTER_S = 300.0
WARMUP = 100                 # activations before the baseline: pools, caches, code paths
CONCURRENCY = 50


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"     # the shape gateway ids have


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def seed(stores: MongoStores, reg: Registry, env: ActorEnv, clock: FakeClock, uri: str, db_name: str,
               count: int, members: int) -> list[str]:
    """``count`` group conversations of ``members`` users, each with one message and its checkpoint.

    One is made for real (the store creates it, the actor takes one send and saves its progress,
    then is passivated); its conversation and event documents are then cloned in bulk, so every
    field is what the code writes today.
    """
    users = [_id("u") for _ in range(max(members * 4, count // 2))]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    template_id = _id("c")
    await stores.conversations.create({
        "conversation_id": template_id, "kind": "group", "title": "bench", "members": users[:members],
        "roles": {u: ("owner" if k == 0 else "member") for k, u in enumerate(users[:members])},
        "created_at": now, "last_seq": 0, "last_activity_at": now})
    await reg.call("conv", template_id, "send", SendCommand(sender_id=users[0], client_msg_id="seed", body="seeded"))
    await settle(env)
    await passivate_all_but(reg, clock, [])
    await settle(env)
    client: AsyncMongoClient = AsyncMongoClient(uri, tz_aware=True)
    try:
        db = client[db_name]
        conv = await db["conversations"].find_one({"_id": template_id})
        event = await db["events"].find_one({"conversation_id": template_id})
        event.pop("_id")
        cids = [template_id] + [_id("c") for _ in range(count - 1)]
        for lo in range(1, count, 1000):
            convs, events = [], []
            for i, cid in enumerate(cids[lo:lo + 1000], start=lo):
                who = list(dict.fromkeys(users[(i * 7 + k * 13) % len(users)] for k in range(members)))
                convs.append({**conv, "_id": cid, "title": f"bench {i}", "members": who,
                              "roles": {u: ("owner" if k == 0 else "member") for k, u in enumerate(who)}})
                events.append({**event, "conversation_id": cid, "sender_id": who[0]})
            await db["conversations"].insert_many(convs, ordered=False)
            await db["events"].insert_many(events, ordered=False)
    finally:
        await client.close()
    return cids


def build_env(stores: MongoStores, presence: RedisPresence, clock: FakeClock) -> ActorEnv:
    """An ActorEnv as a host builds it, with fan-out and timers that do nothing."""
    defaults = Settings()
    offered: dict[str, Any] = {
        "events": stores.events, "conversations": stores.conversations, "presence": presence, "clock": clock,
        "fanout": lambda *a, **k: None, "call_later": lambda *a, **k: None,
    }
    kwargs = {}
    for f in dataclasses.fields(ActorEnv):
        if f.name in offered:
            kwargs[f.name] = offered[f.name]
        elif hasattr(defaults, f.name):           # dedupe_window, presence_ttl_s, ...: the defaults
            kwargs[f.name] = getattr(defaults, f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RuntimeError(f"bench/actor_mem.py: ActorEnv has a new field {f.name!r}; teach build_env it")
    return ActorEnv(**kwargs)


async def call_all(reg: Registry, cids: list[str], method: str, arg_for=lambda cid: None) -> None:
    for lo in range(0, len(cids), CONCURRENCY):
        await asyncio.gather(*(reg.call("conv", cid, method, arg_for(cid)) for cid in cids[lo:lo + CONCURRENCY]))


async def settle(env: ActorEnv) -> None:
    """Wait for the background work actors spawned (progress saves and the like)."""
    while env._tasks:
        await asyncio.gather(*list(env._tasks), return_exceptions=True)


async def passivate_all_but(reg: Registry, clock: FakeClock, keep: list[str]) -> int:
    """Advance the clock past idle, touch ``keep`` so they stay, sweep the rest."""
    clock.advance(IDLE_AFTER_S + 1)
    await call_all(reg, keep, "members")
    return len(await reg.sweep())


_NOT_OWNED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)


def breakdown(reg: Registry, env: ActorEnv) -> dict[str, float]:
    """Average bytes per activated actor by object type: everything reachable from a registry
    entry (key and slot) that is not shared runtime (env, stores, registry, classes, functions).
    An object reachable from several actors is counted once."""
    shared = {id(reg), id(env), id(reg._factories), id(reg._clock), id(reg._slots)}
    seen: set[int] = set()
    sizes: Counter = Counter()
    slots = reg._slots  # the benchmark looks inside on purpose
    for key, slot in slots.items():
        stack: list[Any] = [key, slot]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or id(obj) in shared or isinstance(obj, _NOT_OWNED):
                continue
            seen.add(id(obj))
            sizes[type(obj).__name__] += sys.getsizeof(obj)
            refs = gc.get_referents(obj)
            if isinstance(obj, dict):      # gc skips str keys, which are not containers
                refs = [*obj.keys(), *refs]
            stack.extend(refs)
    n = len(slots)
    out = {name: round(size / n, 1) for name, size in sizes.most_common()}
    out["(registry dict, share per entry)"] = round(sys.getsizeof(slots) / n, 1)
    out["total"] = round(sum(out.values()), 1)
    return out


def _top(diff: list[tracemalloc.StatisticDiff], n: int, root: str, actors: int) -> list[dict[str, Any]]:
    out = []
    for st in diff[:n]:
        frame = st.traceback[0]
        out.append({"where": f"{frame.filename.replace(root, '')}:{frame.lineno}",
                    "bytes_per_actor": round(st.size_diff / actors, 1),
                    "blocks_per_actor": round(st.count_diff / actors, 2)})
    return out


async def run(mongo_uri: str, redis_url: str, *, actors: int, cold: int, members: int) -> dict[str, Any]:
    db_name = f"bench_actors_{os.getpid()}"
    stores = MongoStores(mongo_uri, db_name)
    await stores.ensure_indexes()
    presence = RedisPresence(redis_url, prefix=f"bench:{os.getpid()}:")
    clock = FakeClock()
    env = build_env(stores, presence, clock)
    reg = Registry({"conv": lambda cid: ConversationActor(cid, env)}, clock,
                   idle_after_s=IDLE_AFTER_S, mailbox_capacity=1000)
    out: dict[str, Any] = {"actors": actors, "members_per_conversation": members}
    phases: dict[str, float] = {}
    out["phase_s"] = phases
    mark = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        phases[name] = round(now - mark[0], 2)
        mark[0] = now

    try:
        cids = await seed(stores, reg, env, clock, mongo_uri, db_name, actors + 2 * WARMUP + cold, members)
        warm_a, warm_b = cids[:WARMUP], cids[WARMUP:2 * WARMUP]
        measured = cids[2 * WARMUP:2 * WARMUP + actors]
        cold_set = cids[2 * WARMUP + actors:]
        lap("seed")

        # Pass A, no tracing: what the process's resident memory says.
        await call_all(reg, warm_a, "members")
        gc.collect()
        rss0 = rss_bytes()
        t = time.perf_counter()
        await call_all(reg, measured, "members")
        activate_s = time.perf_counter() - t
        gc.collect()
        out["rss_bytes_per_actor"] = round((rss_bytes() - rss0) / actors, 1)
        out["bulk_activations_per_s"] = round(actors / activate_s, 1)
        await passivate_all_but(reg, clock, [])
        gc.collect()
        lap("rss pass")

        # Pass B, tracemalloc: the Python memory the actors hold, and where it was allocated.
        tracemalloc.start(1)
        await call_all(reg, warm_b, "members")
        gc.collect()
        snap_base = tracemalloc.take_snapshot()
        await call_all(reg, measured, "members")
        gc.collect()
        snap_active = tracemalloc.take_snapshot()
        assert reg.count("conv") == actors + WARMUP, reg.count("conv")
        out["breakdown_bytes_per_actor"] = breakdown(reg, env)
        gone = await passivate_all_but(reg, clock, warm_b)
        assert gone == actors, gone
        snap_swept = tracemalloc.take_snapshot()        # before the cyclic GC has run
        gc.collect()
        snap_passive = tracemalloc.take_snapshot()
        tracemalloc.stop()
        lap("tracemalloc pass")

        def per_actor(a: tracemalloc.Snapshot, b: tracemalloc.Snapshot) -> float:
            return round(sum(s.size_diff for s in b.compare_to(a, "filename")) / actors, 1)

        out["tracemalloc_bytes_per_idle_actor"] = per_actor(snap_base, snap_active)
        out["tracemalloc_bytes_per_passivated_actor_before_gc"] = per_actor(snap_base, snap_swept)
        out["tracemalloc_bytes_per_passivated_actor"] = per_actor(snap_base, snap_passive)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
        out["top_allocations_active"] = _top(snap_active.compare_to(snap_base, "lineno"), 12, root, actors)
        out["top_allocations_passivated"] = _top(snap_passive.compare_to(snap_base, "lineno"), 5, root, actors)

        # Cold activation: one call at a time to a conversation not in memory, with a history.
        lat_cold = []
        for cid in cold_set:
            t = time.perf_counter()
            await reg.call("conv", cid, "members")
            lat_cold.append(time.perf_counter() - t)
        lat_warm = []
        for cid in cold_set:
            t = time.perf_counter()
            await reg.call("conv", cid, "members")
            lat_warm.append(time.perf_counter() - t)
        out["cold_activation_ms"] = summary_ms(lat_cold)
        out["warm_call_ms"] = summary_ms(lat_warm)
        lap("cold and warm calls")

        # Where cold activation time goes: the two reads on_activate starts with, and a bare round trip.
        parts: dict[str, list[float]] = {"conversations.get": [], "events.last_seq": [], "both (gather)": [],
                                         "mongo ping": []}
        for cid in cold_set[:300]:
            t = time.perf_counter()
            await stores.conversations.get(cid)
            parts["conversations.get"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await stores.events.last_seq(cid)
            parts["events.last_seq"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.gather(stores.conversations.get(cid), stores.events.last_seq(cid))
            parts["both (gather)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await stores.ping()
            parts["mongo ping"].append(time.perf_counter() - t)
        out["cold_activation_parts_ms"] = {k: summary_ms(v) for k, v in parts.items()}
        lap("store parts")
    finally:
        await reg.passivate_all(PassivationReason.HOST_STOPPING)
        await settle(env)
        await presence.close()
        await stores.close()
    return out
