"""EventStore contract: every adapter subclasses EventStoreContract with an ``events`` fixture."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from storage.errors import DuplicateEvent, EventRefused, StoreUnavailable
from storage.mongo import MongoStores
from storage.ports import EventStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms


def event(seq: int, *, cid: str = "c1", sender: str = "u1", client_msg_id: str | None = None,
          body: str | None = None) -> dict[str, Any]:
    return {
        "conversation_id": cid, "seq": seq, "kind": "message", "sender_id": sender,
        "client_msg_id": client_msg_id, "body": body if body is not None else f"m{seq}",
        "attachments": [], "reply_to": None, "created_at": T0,
    }


T_EARLY = datetime(2030, 1, 1, tzinfo=timezone.utc)
T_LATER = datetime(2030, 1, 2, tzinfo=timezone.utc)


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


class EventStoreContract:
    @pytest.fixture
    def events(self) -> EventStore:
        raise NotImplementedError

    async def test_appended_events_read_back_equal(self, events):
        """What append stores is what read_after returns, field for field, nothing added."""
        batch = [event(1, client_msg_id="a"), event(2)]
        await events.append(batch)
        assert await events.read_after("c1", 0, 10) == batch

    async def test_times_come_back_aware_utc(self, events):
        await events.append([event(1)])
        [stored] = await events.read_after("c1", 0, 10)
        assert stored["created_at"].utcoffset() is not None
        assert stored["created_at"].utcoffset().total_seconds() == 0

    async def test_append_leaves_callers_dicts_untouched(self, events):
        batch = [event(1)]
        await events.append(batch)
        assert batch == [event(1)]

    async def test_append_of_nothing_is_a_no_op(self, events):
        await events.append([])
        assert await events.last_seq("c1") == 0

    async def test_seq_collision_stores_the_prefix_only(self, events):
        """Events before the refused one are stored; it and the rest are not."""
        await events.append([event(1), event(2)])
        with pytest.raises(DuplicateEvent) as refused:
            await events.append([event(3), event(4), event(2, body="stale owner"), event(5)])
        assert (refused.value.key, refused.value.index) == ("seq", 2)
        assert seqs(await events.read_after("c1", 0, 10)) == [1, 2, 3, 4]
        assert (await events.read_after("c1", 1, 1))[0]["body"] == "m2"

    async def test_seq_collision_on_the_first_event_stores_nothing(self, events):
        await events.append([event(1)])
        with pytest.raises(DuplicateEvent) as refused:
            await events.append([event(1), event(2)])
        assert (refused.value.key, refused.value.index) == ("seq", 0)
        assert await events.last_seq("c1") == 1

    async def test_an_event_the_store_cannot_take_stops_the_append_at_it(self, events):
        """A lone surrogate (JSON carries one; UTF-8 cannot): the events before it are stored,
        it and the rest are not, and the rest go through when sent again."""
        with pytest.raises(EventRefused) as refused:
            await events.append([event(1), event(2), event(3, body="a\ud800b"), event(4)])
        assert refused.value.index == 2
        assert seqs(await events.read_after("c1", 0, 10)) == [1, 2]
        await events.append([event(3), event(4)])
        assert seqs(await events.read_after("c1", 0, 10)) == [1, 2, 3, 4]

    async def test_an_event_the_store_cannot_take_first_stores_nothing(self, events):
        with pytest.raises(EventRefused) as refused:
            await events.append([event(1, client_msg_id="\udfff"), event(2)])
        assert refused.value.index == 0
        assert await events.last_seq("c1") == 0

    async def test_client_msg_id_collision_names_its_key(self, events):
        await events.append([event(1, client_msg_id="a")])
        with pytest.raises(DuplicateEvent) as refused:
            await events.append([event(2, client_msg_id="b"), event(3, client_msg_id="a")])
        assert (refused.value.key, refused.value.index) == ("client_msg_id", 1)
        assert seqs(await events.read_after("c1", 0, 10)) == [1, 2]

    async def test_client_msg_id_is_scoped_to_sender_and_conversation(self, events):
        await events.append([event(1, client_msg_id="a")])
        await events.append([event(2, sender="u2", client_msg_id="a")])
        await events.append([event(1, cid="c2", client_msg_id="a")])
        assert seqs(await events.read_after("c1", 0, 10)) == [1, 2]
        assert seqs(await events.read_after("c2", 0, 10)) == [1]

    async def test_none_client_msg_id_never_dedupes(self, events):
        await events.append([event(1), event(2)])
        await events.append([event(3)])
        assert seqs(await events.read_after("c1", 0, 10)) == [1, 2, 3]

    async def test_last_seq_is_zero_for_an_empty_conversation(self, events):
        assert await events.last_seq("nobody-wrote-here") == 0

    async def test_last_seq_is_the_highest_stored(self, events):
        await events.append([event(1), event(2), event(3)])
        await events.append([event(9, cid="c2")])
        assert await events.last_seq("c1") == 3

    async def test_read_after_is_ascending_exclusive_and_limited(self, events):
        await events.append([event(s) for s in range(1, 8)])
        await events.append([event(1, cid="c2")])
        assert seqs(await events.read_after("c1", 2, 3)) == [3, 4, 5]
        assert seqs(await events.read_after("c1", 5, 100)) == [6, 7]
        assert await events.read_after("c1", 7, 10) == []

    async def test_read_before_is_descending_exclusive_and_limited(self, events):
        await events.append([event(s) for s in range(1, 8)])
        await events.append([event(9, cid="c2")])
        assert seqs(await events.read_before("c1", 5, 3)) == [4, 3, 2]
        assert seqs(await events.read_before("c1", 3, 100)) == [2, 1]
        assert await events.read_before("c1", 1, 10) == []

    async def test_read_before_none_starts_at_the_newest(self, events):
        await events.append([event(s) for s in range(1, 6)])
        assert seqs(await events.read_before("c1", None, 2)) == [5, 4]

    async def test_zero_limit_reads_nothing(self, events):
        await events.append([event(1)])
        assert await events.read_after("c1", 0, 0) == []
        assert await events.read_before("c1", None, 0) == []

    async def test_find_client_msg_returns_the_stored_event(self, events):
        await events.append([event(1), event(2, client_msg_id="a")])
        assert await events.find_client_msg("c1", "u1", "a") == event(2, client_msg_id="a")

    async def test_find_client_msg_misses_other_senders_and_unknown_ids(self, events):
        await events.append([event(1, client_msg_id="a")])
        assert await events.find_client_msg("c1", "u2", "a") is None
        assert await events.find_client_msg("c1", "u1", "b") is None

    async def test_get_reads_one_event_and_none_for_a_missing_seq(self, events):
        await events.append([event(1), event(2)])
        assert (await events.get("c1", 2))["seq"] == 2
        assert await events.get("c1", 3) is None

    async def test_last_seq_at_least_reads_above_a_seq_known_to_be_stored(self, events):
        await events.append([event(1), event(2), event(3)])
        assert await events.last_seq("c1", at_least=1) == 3
        assert await events.last_seq("c1", at_least=3) == 3
        # Nothing above it: the caller's seq stands (it knows that one was stored).
        assert await events.last_seq("c1", at_least=5) == 5

    async def test_messages_before_pages_through_sparse_messages_and_a_deleted_prefix(self, events):
        # Messages at every 7th seq among other events, the first 30 seqs gone (retention):
        # each page is what one query over the whole log would give, wherever it starts.
        log = [event(n) if n % 7 == 0 else {**event(n), "kind": "reaction", "target_seq": n - 1, "emoji": "+1",
                                             "on": True} for n in range(31, 401)]
        await events.append(log)
        everything = [n for n in range(400, 30, -1) if n % 7 == 0]
        for before, limit in ((401, 5), (401, 1), (380, 3), (100, 20), (35, 2), (10**9, 4), (1, 5)):
            want = [n for n in everything if n < before][:limit]
            assert seqs(await events.messages_before("c1", before, limit)) == want, (before, limit)
        assert seqs(await events.messages_before("c1", None, 3)) == everything[:3]

    async def test_messages_before_and_count_skip_other_kinds(self, events):
        await events.append([event(1), {**event(2), "kind": "member_added", "user_ids": ["u9"]}, event(3)])
        assert seqs(await events.messages_before("c1", None, 10)) == [3, 1]
        assert await events.count_messages_after("c1", 0) == 2
        assert await events.count_messages_after("c1", 1) == 1
        assert await events.count_messages_after("c1", 3) == 0

    async def test_edit_is_idempotent_and_a_later_edit_wins(self, events):
        await events.append([event(1)])
        await events.edit_message("c1", 1, "second", T_LATER)
        await events.edit_message("c1", 1, "first", T_EARLY)
        got = await events.get("c1", 1)
        assert (got["body"], got["edited_at"]) == ("second", T_LATER)

    async def test_erase_removes_the_body_from_the_message_and_its_edits(self, events):
        await events.append([event(1), {**event(2), "kind": "edit", "target_seq": 1, "body": "secret"}])
        await events.edit_message("c1", 1, "secret", T_EARLY)
        await events.erase_message("c1", 1)
        msg, edit = await events.get("c1", 1), await events.get("c1", 2)
        assert msg["deleted"] is True and "body" not in msg and "body" not in edit
        await events.edit_message("c1", 1, "zombie", T_LATER)   # a replayed edit cannot revive it
        assert "body" not in await events.get("c1", 1)

    async def test_attached_elsewhere_finds_only_other_live_messages_of_the_conversation(self, events):
        await events.append([{**event(1), "attachments": ["m1", "m2"]}, {**event(2), "attachments": ["m1"]},
                             event(3)])
        await events.append([{**event(1, cid="c2"), "attachments": ["m2"]}])
        assert await events.attached_elsewhere("c1", "m1", 1) is True       # message 2 has it too
        assert await events.attached_elsewhere("c1", "m2", 1) is False      # only in c2 besides
        assert await events.attached_elsewhere("c1", "m3", 1) is False
        await events.erase_message("c1", 2)                                  # a deleted message attaches nothing
        assert await events.attached_elsewhere("c1", "m1", 1) is False
        assert await events.attached_elsewhere("c2", "m2", 5) is True

    async def test_reactions_are_one_per_user_per_emoji(self, events):
        await events.append([event(1)])
        for _ in range(2):
            await events.set_reaction("c1", 1, "u1", "👍", True)
        await events.set_reaction("c1", 1, "u2", "👍", True)
        await events.set_reaction("c1", 1, "u2", "🎉", True)
        await events.set_reaction("c1", 1, "u2", "🎉", False)
        got = await events.get("c1", 1)
        assert sorted((r["emoji"], r["user_id"]) for r in got["reactions"]) == [("👍", "u1"), ("👍", "u2")]

    async def test_last_membership_change_finds_the_latest_naming_the_user(self, events):
        await events.append([{**event(1), "kind": "member_added", "user_ids": ["u9"]}, event(2),
                             {**event(3), "kind": "member_removed", "user_ids": ["u9"]}, event(4)])
        assert (await events.last_membership_change("c1", "u9", 4))["seq"] == 3
        assert (await events.last_membership_change("c1", "u9", 2))["seq"] == 1
        assert (await events.last_membership_change("c1", "u9", 3))["seq"] == 3      # the bound itself
        assert await events.last_membership_change("c1", "u8", 4) is None


class TestMongoEventStore(EventStoreContract):
    @pytest.fixture
    def events(self, mongo_stores):
        return mongo_stores.events

    async def test_history_and_last_seq_read_a_window_not_the_whole_log(self, events, mongo_stores):
        # SecantusDB reads the whole index range of a sorted, limited query, so what bounds a
        # read's cost is the seq range it asks for: a history page or a last_seq after a
        # checkpoint must not ask for the conversation's whole log (10,000 events: 250 ms).
        await events.append([event(n) for n in range(1, 2001)])
        db = mongo_stores.events._events.database

        async def lowest_seq_asked(read):
            await db["system.profile"].drop()
            await db.command("profile", 2)
            try:
                result = await read()
            finally:
                await db.command("profile", 0)
            asked = [e["command"]["filter"] async for e in db["system.profile"].find({"op": "query"})]
            assert asked and all(f["conversation_id"] == "c1" for f in asked), asked
            return result, min(f.get("seq", {}).get("$gte", f.get("seq", {}).get("$gt", 0)) for f in asked)

        page, lowest = await lowest_seq_asked(lambda: events.messages_before("c1", 1501, 20))
        assert seqs(page) == list(range(1500, 1480, -1))
        assert lowest >= 1400                       # two windows at most, not seq 1 up
        last, lowest = await lowest_seq_asked(lambda: events.last_seq("c1", at_least=1990))
        assert last == 2000 and lowest >= 1990

    async def test_a_delete_reaches_the_messages_edits_through_their_own_index(self, events, mongo_stores):
        # Not through SEQ's conversation_id prefix: that read every event of the conversation.
        await events.append([event(1), {**event(2), "kind": "edit", "target_seq": 1, "body": "v2"}, event(3)])
        raw = mongo_stores.events._events
        plan = await raw.find({"conversation_id": "c1", "kind": "edit", "target_seq": 1}).explain()
        assert "'indexName': 'edits_conversation_target'" in str(plan["queryPlanner"]["winningPlan"])
        await events.erase_message("c1", 1)
        edit = await raw.find_one({"conversation_id": "c1", "seq": 2})
        assert "body" not in edit and edit["target_seq"] == 1

    async def test_a_retried_sends_lookup_reads_its_own_index(self, events, mongo_stores):
        # Not through SEQ's conversation_id prefix: SecantusDB never reads a ``$type`` partial
        # index, so the lookup read every event of the conversation (412 ms at 20,000 events).
        await events.append([event(1, client_msg_id="a"), event(2), event(3, client_msg_id="b")])
        raw = mongo_stores.events._events
        plan = await raw.find({"conversation_id": "c1", "sender_id": "u1", "client_msg_id": "b"}).explain()
        assert "'indexName': 'conversation_sender_client_msg_id'" in str(plan["queryPlanner"]["winningPlan"])
        assert (await events.find_client_msg("c1", "u1", "b"))["seq"] == 3

    async def test_an_upgrade_replaces_the_type_filtered_index_and_keeps_ids_unique(self, mongo_server):
        # A store of the release before: its unique index filtered on ``$type: "string"``.
        stores = MongoStores(mongo_server.uri, f"test_{uuid.uuid4().hex}")
        try:
            raw = stores.events._events
            await raw.create_index([("conversation_id", 1), ("sender_id", 1), ("client_msg_id", 1)],
                                   name="conversation_sender_client_msg", unique=True,
                                   partialFilterExpression={"client_msg_id": {"$type": "string"}})
            await stores.events.append([event(1, client_msg_id="a"), event(2), event(3)])
            # Two hosts start at once: both build the new index, one drops the old, neither fails.
            await asyncio.gather(stores.ensure_indexes(), stores.ensure_indexes())
            names = {index["name"] async for index in await raw.list_indexes()}
            assert "conversation_sender_client_msg_id" in names
            assert "conversation_sender_client_msg" not in names
            with pytest.raises(DuplicateEvent) as caught:
                await stores.events.append([event(4, client_msg_id="a")])
            assert caught.value.key == "client_msg_id"
            await stores.events.append([event(4), event(5)])          # ids of None still coexist
            assert (await stores.events.find_client_msg("c1", "u1", "a"))["seq"] == 1
            await stores.ensure_indexes()                              # and the next start is a no-op
        finally:
            await stores.close()

    async def test_append_resent_after_a_lost_reply_stores_each_event_once(self, faulty_mongo_stores, mongo_faults):
        """The driver re-sends an insert whose reply was lost: no error, no duplicate."""
        store = faulty_mongo_stores.events
        await mongo_faults.lose_next_reply("insert")
        await store.append([event(1), event(2), event(3)])
        assert seqs(await store.read_after("c1", 0, 10)) == [1, 2, 3]

    async def test_projections_resent_after_a_lost_reply_apply_once(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.events
        await store.append([event(1), event(2)])
        await mongo_faults.lose_next_reply("update")
        await store.edit_message("c1", 1, "edited", T0)
        await mongo_faults.lose_next_reply("update")
        await store.set_reaction("c1", 1, "u2", "👍", True)
        await mongo_faults.lose_next_reply("update")
        await store.erase_message("c1", 2)
        first, second = await store.read_after("c1", 0, 10)
        assert first["body"] == "edited" and first["reactions"] == [{"emoji": "👍", "user_id": "u2"}]
        assert second["deleted"] is True and "body" not in second

    async def test_append_whose_replies_are_lost_twice_reports_unavailable_and_stores_once(
            self, faulty_mongo_stores, mongo_faults):
        # One re-send; past that the outcome is unknown to the caller, who re-sends the same
        # events (the conversation actor does, after reloading): still each stored once.
        store = faulty_mongo_stores.events
        await mongo_faults.lose_next_reply("insert", times=2)
        with pytest.raises(StoreUnavailable):
            await store.append([event(1), event(2)])
        assert seqs(await store.read_after("c1", 0, 10)) == [1, 2]
