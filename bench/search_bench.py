"""Search latency over stored messages: `python -m bench.search_bench [--messages 100000] [--out ...]`.

Starts its own SecantusDB as `raychat up` does (on disk in a temp dir, fsync per commit when the
journal is on), creates ~500 group conversations of 10 members (250 users, so each is in ~20),
and stores 100,000 messages straight through the Mongo adapter (``MongoStores.events.append``),
indexed as the conversation actor indexes them (``raychat.terms.terms``). Message text is drawn
from a vocabulary with a Zipf distribution (common English words first, then made-up rarer ones).
Then it times what ``GET /v1/search`` does in the store, one query at a time: the caller's
conversation ids (``ids_for_member``), then ``events.search`` for a page of 20; with
``conversation_id``, the membership read (``conversations.get``) instead of the ids. No Ray, no
HTTP: the gateway adds its usual round trip on top. Prints a Markdown table; writes every number,
with the machine, to JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from bisect import bisect
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import Any

from gateway.search_service import MAX_SEARCHED_CONVERSATIONS
from raychat.config import Settings
from raychat.terms import query_terms, terms
from storage.embedded import start_mongo
from storage.mongo import MongoStores

from .cpu import CpuWindow
from .run import machine
from .stats import summary_ms

log = logging.getLogger("bench.search")

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PAGE = 20
# The most frequent English words (roughly by rank); the rest of the vocabulary is made up.
COMMON = """the to i you a and it is that of in for me on my be this have we do not with are was
what so just at can but if your get all it's no like know will up out about he one go now they
there lol ok yes how good think time see too don't from got or want when then an there's can't
was need here back did right going her some day today more new going really would make come
tonight tomorrow work sure thanks let's call meeting later maybe take still sorry well people
home game week last first night next very love great way over why much also send look lunch
dinner soon team office plan done free check morning things pretty probably said thing nice
weekend again long cool ready before after hey guys year any other something start only fine
thank please where who wait always never place little many same find phone help friends tell
text feel movie around doing coffee though hope each already""".split()
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "zu", "ri", "mo", "fa",
             "te", "ga", "li", "no", "be", "shi", "ro", "ma", "ke", "tu", "ya", "wo", "xi", "po"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.search_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--conversations", type=int, default=500)
    p.add_argument("--users", type=int, default=250)
    p.add_argument("--members", type=int, default=10, help="members per conversation")
    p.add_argument("--vocabulary", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=30, help="timed queries per kind (after 3 warm-up)")
    p.add_argument("--memory", action="store_true", help="SecantusDB in memory instead of on disk")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("bench/search_results.json"))
    return p.parse_args(argv)


def vocabulary(size: int, rnd: random.Random) -> list[str]:
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < size:
        word = "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Zipf:
    """Ranks drawn with probability ∝ 1/rank (s = 1, as word frequencies roughly go)."""

    def __init__(self, n: int, rnd: random.Random):
        self._cum = list(accumulate(1.0 / r for r in range(1, n + 1)))
        self._rnd = rnd

    def rank(self) -> int:
        return bisect(self._cum, self._rnd.random() * self._cum[-1])


def sentence(words: list[str], zipf: Zipf, rnd: random.Random) -> str:
    n = min(40, max(1, int(rnd.lognormvariate(2.0, 0.6))))      # median ~7 words, a long tail
    text = " ".join(words[zipf.rank()] for _ in range(n))
    return text[0].upper() + text[1:] + rnd.choice([".", "!", "?", "", "", " :)"])


async def populate(stores: MongoStores, args: argparse.Namespace, rnd: random.Random
                   ) -> tuple[dict[str, list[str]], dict[str, Counter], list[str], dict[str, float]]:
    """Users' conversations, each conversation's term counts (to know the candidates a query
    has), the vocabulary, and how long each part took."""
    words = vocabulary(args.vocabulary, rnd)
    zipf = Zipf(len(words), rnd)
    users = [f"u_{i:05d}" for i in range(args.users)]
    convs = [f"c_{i:05d}" for i in range(args.conversations)]
    member_of: dict[str, list[str]] = defaultdict(list)
    members: dict[str, list[str]] = {}
    for cid in convs:
        members[cid] = rnd.sample(users, args.members)
        for u in members[cid]:
            member_of[u].append(cid)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    sem = asyncio.Semaphore(8)

    async def create(cid: str) -> None:
        async with sem:
            await stores.conversations.create({
                "conversation_id": cid, "kind": "group", "title": cid, "members": members[cid],
                "roles": {u: "member" for u in members[cid]}, "created_at": T0, "last_seq": 0,
                "last_activity_at": T0, "e2ee": False, "state_seq": 0, "message_count": 0})

    await asyncio.gather(*(create(cid) for cid in convs))
    timings["create_conversations_s"] = time.perf_counter() - t

    # Messages in time order, each in a random conversation; stored per conversation in seq order.
    per_conv: dict[str, list[dict[str, Any]]] = defaultdict(list)
    counts: dict[str, Counter] = defaultdict(Counter)
    n_terms = 0
    t = time.perf_counter()
    for i in range(args.messages):
        cid = rnd.choice(convs)
        body = sentence(words, zipf, rnd)
        found = terms(body)
        n_terms += len(found)
        counts[cid].update(found)
        seq = len(per_conv[cid]) + 1
        per_conv[cid].append({
            "conversation_id": cid, "seq": seq, "kind": "message", "sender_id": rnd.choice(members[cid]),
            "client_msg_id": f"m{i}", "body": body, "attachments": [], "reply_to": None,
            "created_at": T0 + timedelta(milliseconds=1500 * i + rnd.randrange(1000)), "terms": found})
    timings["generate_s"] = time.perf_counter() - t
    timings["terms_per_message"] = n_terms / max(1, args.messages)

    t = time.perf_counter()
    batches = [evs[i:i + 500] for evs in per_conv.values() for i in range(0, len(evs), 500)]

    async def store(batch: list[dict[str, Any]]) -> None:
        async with sem:
            await stores.events.append(batch)

    done = 0
    for start in range(0, len(batches), 50):
        chunk = batches[start:start + 50]
        await asyncio.gather(*(store(b) for b in chunk))
        done += sum(len(b) for b in chunk)
        log.info("stored %d / %d messages", done, args.messages)
    timings["store_messages_s"] = time.perf_counter() - t
    return dict(member_of), counts, words, timings


def query_kinds(words: list[str]) -> dict[str, Any]:
    """Each kind: how to draw one query (a string) from a random.Random."""
    common = words[:10]
    mid = words[100:1000]
    rare = words[5000:]
    return {
        "1 word, common (rank 1-10)": lambda r: r.choice(common),
        "1 word, mid (rank 100-1,000)": lambda r: r.choice(mid),
        "1 word, rare (rank 5,000+)": lambda r: r.choice(rare),
        "2 words, common + common": lambda r: " ".join(r.sample(common, 2)),
        "2 words, common + rare": lambda r: f"{r.choice(common)} {r.choice(rare)}",
        "1 word, not in any message": lambda r: "qqqzzzx",
    }


async def time_queries(stores: MongoStores, member_of: dict[str, list[str]], counts: dict[str, Counter],
                       words: list[str], n: int, rnd: random.Random) -> list[dict[str, Any]]:
    users = sorted(member_of)
    out = []

    async def one(user: str, q: str, cid: str | None, second_page: bool) -> tuple[float, int, int]:
        wanted = query_terms(q)
        pivot = max(wanted, key=len)
        started = time.perf_counter()
        if cid is None:
            ids = await stores.conversations.ids_for_member(user, MAX_SEARCHED_CONVERSATIONS)
        else:
            await stores.conversations.get(cid)          # the membership check
            ids = [cid]
        cursor = None
        if second_page:
            _, cursor = await stores.events.search(ids, wanted, None, PAGE)
            if cursor is None:
                return -1.0, 0, 0
            started = time.perf_counter()
        page, _ = await stores.events.search(ids, wanted, cursor, PAGE)
        took = time.perf_counter() - started
        candidates = sum(counts[c][pivot] for c in ids)
        return took, len(page), candidates

    plans: list[tuple[str, Any, bool, bool]] = [(name, draw, False, False) for name, draw in query_kinds(words).items()]
    plans.insert(1, ("1 word, common, with conversation_id", query_kinds(words)["1 word, common (rank 1-10)"],
                     True, False))
    plans.insert(2, ("1 word, common, page 2 (cursor)", query_kinds(words)["1 word, common (rank 1-10)"],
                     False, True))
    for name, draw, with_cid, second_page in plans:
        times, hits, cands = [], [], []
        for i in range(n + 3):
            user = rnd.choice(users)
            cid = rnd.choice(member_of[user]) if with_cid else None
            took, got, candidates = await one(user, draw(rnd), cid, second_page)
            if took < 0 or i < 3:                       # warm-up, or no second page to time
                continue
            times.append(took)
            hits.append(got)
            cands.append(candidates)
        row = {"kind": name, "latency_ms": summary_ms(times),
               "mean_results": sum(hits) / max(1, len(hits)),
               "mean_candidates": sum(cands) / max(1, len(cands))}
        log.info("%s: %s", name, row)
        out.append(row)
    return out


def table(res: dict[str, Any]) -> str:
    lines = ["| query (a page of 20, over the caller's ~20 conversations) | p50 | p99 | mean results | "
             "candidates fetched (mean) |", "|---|---|---|---|---|"]
    for r in res["queries"]:
        lat = r["latency_ms"]
        lines.append(f"| {r['kind']} | {lat.get('p50', float('nan')):.1f} ms | {lat.get('p99', float('nan')):.1f} ms "
                     f"| {r['mean_results']:.1f} | {r['mean_candidates']:,.0f} |")
    return "\n".join(lines)


async def run(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    rnd = random.Random(args.seed)
    stores = MongoStores(uri, "bench_search", timeout_ms=60_000)
    try:
        await stores.ensure_indexes()
        member_of, counts, words, timings = await populate(stores, args, rnd)
        sizes = [len(v) for v in member_of.values()]
        cpu = CpuWindow().start()
        queries = await time_queries(stores, member_of, counts, words, args.queries, rnd)
        return {"timings": timings, "queries": queries, "cpu_during_queries": cpu.stop(),
                "conversations_per_user": {"mean": sum(sizes) / len(sizes), "min": min(sizes), "max": max(sizes)}}
    finally:
        await stores.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "command": " ".join(["python", "-m", "bench.search_bench", *(argv or sys.argv[1:])]),
                               "machine": machine(), "loadavg_start": os.getloadavg(),
                               "args": {k: str(v) for k, v in vars(args).items()}}
    work = Path(tempfile.mkdtemp(prefix="raychat-search-bench-"))
    t0 = time.perf_counter()
    mongo = None
    try:
        sync = Settings().write_journal and not args.memory
        results["mongo"] = "in memory" if args.memory else f"on disk, sync_on_commit={sync}"
        mongo = start_mongo(":memory:" if args.memory else work / "mongo", log_path=work / "mongo.log",
                            sync_on_commit=sync)
        results.update(asyncio.run(run(mongo.uri, args)))
    finally:
        if mongo is not None:
            mongo.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    md = table(results)
    results["table_markdown"] = md
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m, t = results["machine"], results["timings"]
    print(f"\n{m['nproc']} cores ({m['cpu']}), Python {m['python']}, SecantusDB {m['secantusdb']} "
          f"({results['mongo']}); load average at start {results['loadavg_start'][0]:.2f}, end "
          f"{results['loadavg_end'][0]:.2f}; wall {results['wall_s']} s")
    print(f"{args.messages:,} messages ({t['terms_per_message']:.1f} terms each) in {args.conversations} "
          f"conversations stored in {t['store_messages_s']:.0f} s; users in "
          f"{results['conversations_per_user']['mean']:.1f} conversations each\n")
    print(md)
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
