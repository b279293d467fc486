"""What a checkpoint costs the embedded store: ``python -m bench.checkpoint_writes [MEMBERS ...]``.

Starts SecantusDB as ``raychat up`` does (on disk, an fsync per commit), creates 20 conversations
of MEMBERS members (default: 10 and 100) and measures, for 600 checkpoints each (8 in flight,
each raising one member's read cursor), the store's CPU and the wall time per checkpoint:

    old          everything in the conversation document, as before the progress document
    progress     ``save_progress(..., full=False)``: the progress document only, what most
                 flushes write now
    full         ``save_progress(..., full=True)``: the conversation document alone, cursors
                 included (both documents through Benchmark v5), at most once per listing
                 gap (1 s; members/100 s past 100 members)

The conversation document is indexed by member and SecantusDB rewrites all of a document's index
entries on every update, so its write grows with the group; the progress document's does not
(storage/mongo_conversations.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone

import psutil

from storage.embedded import start_mongo
from storage.mongo import MongoStores

CONVERSATIONS = 20
MEASURED = 600
CONCURRENCY = 8


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def _measure(proc: psutil.Process, write) -> dict:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await write(i)

    cpu0, t0 = _cpu(proc), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(MEASURED)))
    wall, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
    return {"store_cpu_ms": round(cpu * 1000 / MEASURED, 3), "wall_ms": round(wall * 1000 / MEASURED, 3)}


async def run(members: int) -> dict:
    server = start_mongo(tempfile.mkdtemp(prefix="raychat-bench-ckpt-") + "/db", sync_on_commit=True)
    try:
        proc = psutil.Process(server.proc.pid)
        stores = MongoStores(server.uri, "bench")
        await stores.ensure_indexes()
        store = stores.conversations
        users = [f"u{i}" for i in range(members)]
        now = datetime.now(timezone.utc)
        for c in range(CONVERSATIONS):
            await store.create({"conversation_id": f"c{c}", "kind": "group", "title": "t", "members": users,
                                "roles": {u: "member" for u in users}, "created_at": now, "last_seq": 0,
                                "last_activity_at": now, "state_seq": 0})
        seq = iter(range(1, 10_000_000))

        def checkpoint(n: int) -> dict:
            return {"state_seq": n, "last_seq": n, "message_count": n,
                    "last_message": {"seq": n, "sender_id": "u1", "kind": "message", "body": "hello there " * 5,
                                     "created_at": now},
                    "last_activity_at": now + timedelta(seconds=n)}

        async def old(i: int) -> None:
            n, user = next(seq), users[i % members]
            cp = checkpoint(n)
            at = cp.pop("last_activity_at")
            await store._hot.update_one(
                {"_id": f"c{i % CONVERSATIONS}", "state_seq": {"$not": {"$gte": n}}},
                {"$set": cp, "$max": {"last_activity_at": at, f"reads.{user}.seq": n, f"reads.{user}.count": n}})

        def saving(full: bool):
            async def save(i: int) -> None:
                n = next(seq)
                await store.save_progress(f"c{i % CONVERSATIONS}", checkpoint(n), reads={users[i % members]: (n, n)},
                                          full=full)
            return save

        out = {"old": await _measure(proc, old), "progress": await _measure(proc, saving(False)),
               "full": await _measure(proc, saving(True))}
        await stores.close()
        return out
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("members", nargs="*", type=int, default=[10, 100])
    args = p.parse_args()
    print(json.dumps({f"{m} members": asyncio.run(run(m)) for m in args.members}, indent=1))


if __name__ == "__main__":
    main()
