"""EventStore.search contract: every adapter subclasses EventSearchContract with an ``events`` fixture.

Terms here are given as the conversation actor gives them (raychat.terms.terms of the body), so
these tests also pin what a stored message is found by.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from raychat.terms import query_terms, terms
from storage.ports import EventStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms


def message(seq: int, body: str, *, cid: str = "c1", at: datetime | None = None,
            indexed: bool = True) -> dict[str, Any]:
    ev = {"conversation_id": cid, "seq": seq, "kind": "message", "sender_id": "u1", "client_msg_id": f"k{seq}",
          "body": body, "attachments": [], "reply_to": None,
          "created_at": at if at is not None else T0 + timedelta(seconds=seq)}
    if indexed:
        ev["terms"] = terms(body)
    return ev


def found(page: tuple[list[dict[str, Any]], str | None]) -> list[tuple[str, int]]:
    return [(e["conversation_id"], e["seq"]) for e in page[0]]


async def search_all(events: EventStore, cids: list[str], q: str, limit: int) -> list[tuple[str, int]]:
    """Every page, following the cursors; fails on a repeated message or an endless cursor chain."""
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(1000):
        page, cursor = await events.search(cids, query_terms(q), cursor, limit)
        assert len(page) <= limit
        seen += [(e["conversation_id"], e["seq"]) for e in page]
        if cursor is None:
            break
        assert page, "a cursor after an empty page"
    assert len(seen) == len(set(seen)), f"repeated: {seen}"
    return seen


class EventSearchContract:
    @pytest.fixture
    def events(self) -> EventStore:
        raise NotImplementedError

    async def test_finds_messages_with_every_term_newest_first(self, events):
        await events.append([message(1, "Lunch at noon?"), message(2, "noon works"),
                             message(3, "lunch moved to one"), message(4, "NOON LUNCH it is")])
        assert found(await events.search(["c1"], query_terms("lunch noon"), None, 10)) == [("c1", 4), ("c1", 1)]
        assert found(await events.search(["c1"], query_terms("noon"), None, 10)) == [("c1", 4), ("c1", 2), ("c1", 1)]
        assert await events.search(["c1"], query_terms("dinner"), None, 10) == ([], None)

    async def test_finds_only_in_the_conversations_named(self, events):
        await events.append([message(1, "secret plan", cid="mine")])
        await events.append([message(1, "secret plan", cid="theirs")])
        await events.append([message(1, "secret plan", cid="also-mine")])
        got = found(await events.search(["mine", "also-mine"], ["secret"], None, 10))
        assert sorted(got) == [("also-mine", 1), ("mine", 1)]
        assert found(await events.search(["theirs"], ["secret"], None, 10)) == [("theirs", 1)]
        assert await events.search(["nobody"], ["secret"], None, 10) == ([], None)

    async def test_order_is_by_time_across_conversations(self, events):
        await events.append([message(1, "ping", cid="a", at=T0 + timedelta(seconds=5)),
                             message(2, "ping", cid="a", at=T0 + timedelta(seconds=7))])
        await events.append([message(1, "ping", cid="b", at=T0 + timedelta(seconds=6)),
                             message(2, "ping", cid="b", at=T0 + timedelta(seconds=8))])
        got = found(await events.search(["a", "b"], ["ping"], None, 10))
        assert got == [("b", 2), ("a", 2), ("b", 1), ("a", 1)]

    async def test_results_are_messages_as_stored_without_terms(self, events):
        await events.append([message(1, "Café au lait")])
        page, cursor = await events.search(["c1"], query_terms("CAFÉ"), None, 10)
        assert cursor is None
        assert page == [{k: v for k, v in message(1, "Café au lait").items() if k != "terms"}]

    async def test_reads_never_return_terms(self, events):
        await events.append([message(1, "hello there"), message(2, "general kenobi")])
        reads = [*await events.read_after("c1", 0, 10), *await events.read_before("c1", None, 10),
                 *await events.messages_before("c1", None, 10), await events.get("c1", 1),
                 await events.find_client_msg("c1", "u1", "k2"),
                 *(await events.search(["c1"], ["hello"], None, 10))[0]]
        assert len(reads) == 9 and all("terms" not in ev for ev in reads)

    async def test_paging_visits_every_match_once_in_order(self, events):
        # Ties in time (three messages per instant) and two conversations interleaved, with
        # messages that do not match in between.
        batch_a, batch_b = [], []
        for seq in range(1, 31):
            at = T0 + timedelta(seconds=seq // 3)
            body = "match me" if seq % 4 else "not this one"
            batch_a.append(message(seq, body, cid="a", at=at))
            batch_b.append(message(seq, body, cid="b", at=at))
        await events.append(batch_a)
        await events.append(batch_b)
        everything = found(await events.search(["a", "b"], ["match"], None, 100))
        assert len(everything) == 2 * len([s for s in range(1, 31) if s % 4])
        times = [T0 + timedelta(seconds=seq // 3) for _, seq in everything]
        assert times == sorted(times, reverse=True)
        for limit in (1, 4, 7, len(everything), len(everything) + 1):
            assert await search_all(events, ["a", "b"], "match", limit) == everything

    async def test_last_full_page_has_no_cursor(self, events):
        await events.append([message(s, "four of us") for s in range(1, 5)])
        page, cursor = await events.search(["c1"], ["four"], None, 4)
        assert len(page) == 4 and cursor is None
        page, cursor = await events.search(["c1"], ["four"], None, 3)
        assert len(page) == 3 and cursor is not None
        assert found(await events.search(["c1"], ["four"], cursor, 3)) == [("c1", 1)]

    async def test_a_message_stored_after_the_first_page_does_not_shift_the_next(self, events):
        await events.append([message(s, "steady") for s in range(1, 6)])
        first, cursor = await events.search(["c1"], ["steady"], None, 2)
        await events.append([message(6, "steady")])
        rest, _ = await events.search(["c1"], ["steady"], cursor, 10)
        assert found((first, None)) + found((rest, None)) == [("c1", s) for s in (5, 4, 3, 2, 1)]

    async def test_an_edit_replaces_the_terms(self, events):
        await events.append([message(1, "old words")])
        await events.edit_message("c1", 1, "new words", T0 + timedelta(minutes=1), terms("new words"))
        assert found(await events.search(["c1"], ["new"], None, 10)) == [("c1", 1)]
        assert await events.search(["c1"], ["old"], None, 10) == ([], None)
        [hit], _ = await events.search(["c1"], ["words"], None, 10)
        assert (hit["body"], hit["edited_at"]) == ("new words", T0 + timedelta(minutes=1))

    async def test_an_edit_without_terms_leaves_none(self, events):
        await events.append([message(1, "plain words")])
        await events.edit_message("c1", 1, "b3BhcXVl", T0 + timedelta(minutes=1), None)
        assert await events.search(["c1"], ["plain"], None, 10) == ([], None)

    async def test_a_replayed_older_edit_does_not_bring_its_terms_back(self, events):
        await events.append([message(1, "first")])
        await events.edit_message("c1", 1, "third", T0 + timedelta(minutes=2), terms("third"))
        await events.edit_message("c1", 1, "second", T0 + timedelta(minutes=1), terms("second"))
        assert found(await events.search(["c1"], ["third"], None, 10)) == [("c1", 1)]
        assert await events.search(["c1"], ["second"], None, 10) == ([], None)

    async def test_a_deleted_message_drops_out(self, events):
        await events.append([message(1, "delete me"), message(2, "keep me")])
        await events.erase_message("c1", 1)
        assert found(await events.search(["c1"], ["me"], None, 10)) == [("c1", 2)]
        # An edit replayed after the delete (a crash between the two) cannot bring it back.
        await events.edit_message("c1", 1, "delete me again", T0 + timedelta(minutes=5), terms("delete me again"))
        assert found(await events.search(["c1"], ["delete"], None, 10)) == []

    async def test_messages_stored_without_terms_are_never_found(self, events):
        """As in e2ee conversations, and messages stored before search existed."""
        await events.append([message(1, "ciphertext words", indexed=False), message(2, "clear words")])
        assert found(await events.search(["c1"], ["words"], None, 10)) == [("c1", 2)]
        assert await events.search(["c1"], ["ciphertext"], None, 10) == ([], None)

    async def test_other_event_kinds_are_never_found(self, events):
        await events.append([message(1, "hello"),
                             {**message(2, "hello"), "kind": "edit", "target_seq": 1, "client_msg_id": None}])
        assert found(await events.search(["c1"], ["hello"], None, 10)) == [("c1", 1)]

    async def test_nothing_to_look_in_or_for_finds_nothing(self, events):
        await events.append([message(1, "anything")])
        assert await events.search([], ["anything"], None, 10) == ([], None)
        assert await events.search(["c1"], [], None, 10) == ([], None)
        assert await events.search(["c1"], ["anything"], None, 0) == ([], None)

    @pytest.mark.parametrize("cursor", ["", "x", "not a cursor at all", "A" * 26, "A" * 28, "!" * 27,
                                        "AAAAAAAAAAAAAAAAAAAAAAAAAA_", "////////////////////////////"])
    async def test_a_cursor_the_store_never_gave_out_is_a_value_error(self, events, cursor):
        await events.append([message(1, "page")])
        with pytest.raises(ValueError):
            await events.search(["c1"], ["page"], cursor, 10)

    async def test_a_cursor_is_a_short_opaque_string(self, events):
        await events.append([message(s, "page") for s in range(1, 4)])
        _, cursor = await events.search(["c1"], ["page"], None, 1)
        assert isinstance(cursor, str) and 0 < len(cursor) <= 64 and cursor.isascii()


class TestMongoEventSearch(EventSearchContract):
    @pytest.fixture
    def events(self, mongo_stores):
        return mongo_stores.events

    async def test_search_is_served_by_the_terms_index(self, mongo_stores):
        """SecantusDB plans the search's first stage as an index scan of SEARCH, not a
        collection scan (DESIGN.md: search works on the embedded store too)."""
        from storage.mongo_events import SEARCH, _search_pipeline

        events = mongo_stores.events
        await events.append([message(s, "hi uncommon" if s % 5 == 0 else "hi there", cid=f"c{s % 4}")
                             for s in range(1, 41)])
        collection = events._events
        pipeline = _search_pipeline(["c1", "c2"], ["hi", "uncommon"], None, 21)
        plan = await collection.database.command(
            {"explain": {"aggregate": collection.name, "pipeline": pipeline, "cursor": {}},
             "verbosity": "executionStats"})
        text = repr(plan)
        assert "IXSCAN" in text and SEARCH.name in text and "COLLSCAN" not in text, text[:2000]
        # Documents fetched: exactly those of the rarer (longer) term in the two conversations.
        stats = plan["stages"][0]["$cursor"]["executionStats"]
        assert stats["totalDocsExamined"] == len([s for s in range(1, 41) if s % 4 in (1, 2) and s % 5 == 0]), stats

    async def test_the_index_is_built_over_an_existing_store_whatever_the_store_timeout(self, mongo_server):
        """The first start after the upgrade builds SEARCH over every stored event, which takes
        longer than a store call may: the build is not cut off (SecantusDB would keep nothing)."""
        import time
        import uuid

        from storage.mongo import MongoStores
        from storage.mongo_events import SEARCH

        db = f"test_{uuid.uuid4().hex}"
        loader = MongoStores(mongo_server.uri, db, timeout_ms=120_000)
        hasty = MongoStores(mongo_server.uri, db, timeout_ms=100)
        try:
            old = [message(s, "stored before search existed", cid=f"c{s % 50}", indexed=False)
                   for s in range(1, 20_001)]
            for start in range(0, len(old), 2000):
                await loader.events._events.insert_many(old[start:start + 2000])
            started = time.monotonic()
            await hasty.events.ensure_indexes()
            took = time.monotonic() - started
            names = {ix["name"] async for ix in await loader.events._events.list_indexes()}
            assert SEARCH.name in names
            assert took > 0.1, f"the build took {took:.3f} s, within the store timeout: this proves nothing"
        finally:
            await loader.close()
            await hasty.close()
