"""What the reads of a long conversation cost the embedded store:
``python -m bench.long_conversation [--sizes 1000,10000,30000] [--out F]``.

Starts SecantusDB (in memory), stores one conversation of N events (a membership event, then
messages), and times through the real adapter (``storage/mongo_events.py``) each read a request
or an activation makes, as the callers now make them, beside the unbounded forms they replaced:

    last_seq                     the whole log, as activation and the resume feed used to read it
    last_seq(at_least)           from a seq known to be stored (the checkpoint), as they do now
    history page                 ``messages_before``: the newest 50, then a page mid-log
    history page, unbounded      ``messages_before(None)``: the old newest page
    last_membership_change       what a socket's replay asks of every conversation it resumes
    read_after(N-10)             the resume read itself, for scale

SecantusDB reads the whole index range of a sorted, limited query (mongod stops at the limit), so
the unbounded forms cost the conversation's length and hold the store meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from storage.embedded import start_mongo
from storage.mongo import MongoStores

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
REPEAT = 5


def _log(cid: str, n: int) -> list[dict]:
    docs = []
    for seq in range(1, n + 1):
        base = {"conversation_id": cid, "seq": seq, "sender_id": f"u{seq % 5}", "created_at": T0 + timedelta(seconds=seq)}
        if seq == 1:
            docs.append({**base, "kind": "member_added", "user_ids": [f"u{i}" for i in range(5)], "client_msg_id": None})
        else:
            docs.append({**base, "kind": "message", "client_msg_id": f"k{seq}", "body": "hello world " * 5,
                         "attachments": [], "reply_to": None})
    return docs


async def _ms(read) -> float:
    t = time.perf_counter()
    for _ in range(REPEAT):
        await read()
    return round((time.perf_counter() - t) / REPEAT * 1000, 1)


async def measure(sizes: list[int]) -> dict[str, dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="raychat-longconv-"))
    server = start_mongo(":memory:", log_path=work / "mongo.log")
    out: dict[str, dict[str, float]] = {}
    try:
        stores = MongoStores(server.uri, "longconv")
        await stores.ensure_indexes()
        ev = stores.events
        for n in sizes:
            cid = f"c{n}"
            docs = _log(cid, n)
            for i in range(0, n, 1000):
                await ev._events.insert_many(docs[i:i + 1000], ordered=False)
            out[str(n)] = {
                "last_seq": await _ms(lambda: ev.last_seq(cid)),
                "last_seq(at_least)": await _ms(lambda: ev.last_seq(cid, at_least=n - 5)),
                "history page (newest)": await _ms(lambda: ev.messages_before(cid, n + 1, 51)),
                "history page (mid-log)": await _ms(lambda: ev.messages_before(cid, n // 2, 51)),
                "history page, unbounded": await _ms(lambda: ev.messages_before(cid, None, 51)),
                "last_membership_change": await _ms(lambda: ev.last_membership_change(cid, "u1", n - 10)),
                "read_after(N-10)": await _ms(lambda: ev.read_after(cid, n - 10, 100)),
            }
            print(n, json.dumps(out[str(n)]), flush=True)
        await stores.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,30000")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    result = asyncio.run(measure([int(s) for s in args.sizes.split(",")]))
    if args.out:
        args.out.write_text(json.dumps({"ms_per_read": result, "repeat": REPEAT}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
