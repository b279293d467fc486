"""What batching writes across conversations would save the embedded store:
``python -m bench.store_batching [--writes 2000]``.

Starts SecantusDB as ``raychat up`` does (on disk, an fsync per commit) and measures, per
document, the store's CPU and the wall time of the two writes every message costs today, sent
one per request (as now: each conversation writes its own) or N per request (as a host that
gathered the writes of several conversations into one would), 8 requests in flight:

    insert      events, with the log's two unique indexes, ``insert_many`` of N
    checkpoint  progress documents, guarded by ``state_seq``, ``bulk_write`` of N upserts

This bounds what group commit across conversations could gain: the saving per document, at the
batch sizes a host would actually gather (at 100 messages/s per host and a few ms of waiting,
one or two).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from itertools import count

import psutil
from pymongo import AsyncMongoClient, UpdateOne

from storage.embedded import start_mongo

CONCURRENCY = 8
BATCHES = (1, 2, 4, 16)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def _measure(proc: psutil.Process, writes: int, batch: int, write) -> dict:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await write(i, batch)

    cpu0, t0 = _cpu(proc), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(writes // batch)))
    wall, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
    return {"batch": batch, "store_cpu_ms_per_doc": round(cpu * 1000 / writes, 3),
            "wall_ms_per_doc": round(wall * 1000 / writes, 3)}


async def run(writes: int) -> dict:
    server = start_mongo(tempfile.mkdtemp(prefix="raychat-bench-batching-") + "/db", sync_on_commit=True)
    try:
        proc = psutil.Process(server.proc.pid)
        client = AsyncMongoClient(server.uri, retryWrites=False)
        db = client.bench
        events, progress = db.events, db.progress
        await events.create_index([("conversation_id", 1), ("seq", 1)], unique=True)
        await events.create_index([("conversation_id", 1), ("sender_id", 1), ("client_msg_id", 1)], unique=True)
        seq = count(1)
        body = "hello there " * 5

        async def insert(i: int, batch: int) -> None:
            docs = []
            for _ in range(batch):
                n = next(seq)
                docs.append({"conversation_id": f"c{n % 200}", "seq": n, "sender_id": "u1", "client_msg_id": f"m{n}",
                             "kind": "message", "body": body})
            await events.insert_many(docs, ordered=True)

        async def checkpoint(i: int, batch: int) -> None:
            writes_ = []
            for _ in range(batch):
                n = next(seq)
                writes_.append(({"_id": f"c{n % 200}", "state_seq": {"$not": {"$gte": n}}},
                                {"$set": {"state_seq": n, "last_seq": n, "message_count": n,
                                          "last_message": {"seq": n, "sender_id": "u1", "body": body}}}))
            if batch == 1:
                await progress.update_one(*writes_[0], upsert=True)
            else:
                await progress.bulk_write([UpdateOne(f, u, upsert=True) for f, u in writes_], ordered=False)

        out: dict = {"writes": writes, "concurrency": CONCURRENCY}
        for name, write in (("insert", insert), ("checkpoint", checkpoint)):
            out[name] = [await _measure(proc, writes, b, write) for b in BATCHES]
        await client.close()
        return out
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writes", type=int, default=2000)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.writes)), indent=1))


if __name__ == "__main__":
    main()
