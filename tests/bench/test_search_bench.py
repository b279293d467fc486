"""bench/search_bench.py builds the history it says it builds and times every kind of query.

Behaviour, not speed: a small history on the session SecantusDB."""

from __future__ import annotations

import random
from collections import Counter

from bench import search_bench as sb
from raychat.terms import query_terms


def test_the_vocabulary_is_zipf_distributed_over_distinct_words():
    rnd = random.Random(1)
    words = sb.vocabulary(2000, rnd)
    assert len(set(words)) == 2000 and words[0] == "the"
    zipf = sb.Zipf(len(words), rnd)
    ranks = Counter(zipf.rank() for _ in range(20_000))
    # Rank 1 about twice as often as rank 2 and ten times as often as rank 10 (1/rank).
    assert 1.5 < ranks[0] / ranks[1] < 2.7 and 6 < ranks[0] / ranks[9] < 15


async def test_a_small_history_is_stored_searchable_and_every_kind_is_timed(mongo_stores):
    args = sb.parse_args(["--messages", "400", "--conversations", "12", "--users", "8", "--members", "3",
                          "--vocabulary", "6000", "--queries", "2"])
    rnd = random.Random(3)
    member_of, counts, words, timings = await sb.populate(mongo_stores, args, rnd)
    assert sum(len(v) for v in member_of.values()) == 12 * 3
    assert timings["terms_per_message"] > 1

    # What the bench counts as candidates is what the store finds for a one-word query.
    user = next(iter(member_of))
    ids = await mongo_stores.conversations.ids_for_member(user, 100)
    assert sorted(ids) == sorted(member_of[user])
    page, _ = await mongo_stores.events.search(ids, query_terms("the"), None, 1000)
    assert len(page) == sum(counts[c]["the"] for c in ids) > 0

    rows = await sb.time_queries(mongo_stores, member_of, counts, words, 2, rnd)
    assert len(rows) == 8 and all(r["latency_ms"].get("n", 0) <= 2 for r in rows)
    assert "1 word, common (rank 1-10)" in sb.table({"queries": rows})
