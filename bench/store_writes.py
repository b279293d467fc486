"""What a write costs the embedded store: ``python -m bench.store_writes``.

Starts SecantusDB as ``raychat up`` does (on disk, an fsync per commit), fills its
retryable-write records past their cap (10,000 within 30 minutes) and measures, for 1,000 event
inserts each, the store's CPU and the wall time per insert:

    retrying     a client with pymongo's retryable writes (the default)
    raychat      MongoStores' event store: a client without them, re-sending a lost write itself

SecantusDB keeps one record per retryable write and, on every one, scans them all for the
expired and sorts them once the cap is reached, so a busy store pays per write for every write
of the last half hour. This is why raychat's per-message writes go through a client without
retryable writes (storage/mongo.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import datetime, timezone

import psutil
from bson import ObjectId
from pymongo import AsyncMongoClient, WriteConcern

from storage.embedded import start_mongo
from storage.mongo import MongoStores

FILL = 11_000          # past SecantusDB's cap on retryable-write records (10,000)
MEASURED = 1_000
CONCURRENCY = 8        # about the in-flight inserts of two actor hosts under load


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _event(seq: int) -> dict:
    return {"conversation_id": f"c{seq % 100}", "seq": seq, "kind": "message", "sender_id": "u1",
            "client_msg_id": uuid.uuid4().hex, "body": "hello there, world " * 3, "attachments": [],
            "reply_to": None, "created_at": datetime.now(timezone.utc)}


async def _measure(proc: psutil.Process, insert, first_seq: int) -> dict:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(seq: int) -> None:
        async with sem:
            await insert(seq)

    cpu0, t0 = _cpu(proc), time.perf_counter()
    await asyncio.gather(*(one(first_seq + i) for i in range(MEASURED)))
    wall, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
    return {"store_cpu_ms_per_insert": round(cpu * 1000 / MEASURED, 3),
            "wall_ms_per_insert": round(wall * 1000 / MEASURED, 3)}


async def run() -> dict:
    server = start_mongo(tempfile.mkdtemp(prefix="raychat-bench-store-") + "/db", sync_on_commit=True)
    try:
        proc = psutil.Process(server.proc.pid)
        retrying = AsyncMongoClient(server.uri, retryWrites=True)
        col = retrying.get_database("bench", write_concern=WriteConcern(w="majority", j=True))["events"]

        async def plain(seq: int) -> None:
            await col.insert_one({"_id": ObjectId(), **_event(seq)})

        stores = MongoStores(server.uri, "bench")
        await stores.ensure_indexes()

        async def ours(seq: int) -> None:
            await stores.events.append([_event(seq)])

        results = {"raychat (fresh store)": await _measure(proc, ours, 1)}
        sem = asyncio.Semaphore(CONCURRENCY)

        async def fill(seq: int) -> None:
            async with sem:
                await plain(seq)

        await asyncio.gather(*(fill(10_000_000 + i) for i in range(FILL)))
        results["retrying, after 11,000 retryable writes"] = await _measure(proc, plain, 20_000_000)
        results["raychat, after 11,000 retryable writes"] = await _measure(proc, ours, 30_000_000)
        await stores.close()
        await retrying.close()
        return results
    finally:
        server.stop()


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(json.dumps(asyncio.run(run()), indent=1))


if __name__ == "__main__":
    main()
