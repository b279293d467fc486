"""ConversationStore contract: every adapter subclasses ConversationStoreContract with a
``conversations`` fixture."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from storage.errors import DuplicateKey, StoreUnavailable
from storage.mongo import MongoStores
from storage.mongo_conversations import MongoConversationStore
from storage.ports import ConversationStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms


def conversation(cid: str | None = None, *, members: tuple[str, ...] = ("alice", "bob"), kind: str = "group",
                 at: datetime = T0, last_seq: int = 0) -> dict[str, Any]:
    return {
        "conversation_id": cid or uuid.uuid4().hex, "kind": kind, "title": "t",
        "members": list(members), "roles": {m: "member" for m in members},
        "created_at": at, "last_seq": last_seq, "last_activity_at": at, "state_seq": 0,
    }


def ids(conversations: list[dict[str, Any]]) -> list[str]:
    return [c["conversation_id"] for c in conversations]


class ConversationStoreContract:
    @pytest.fixture
    def conversations(self) -> ConversationStore:
        raise NotImplementedError

    async def test_create_returns_the_conversation_and_get_reads_it_back(self, conversations):
        conv = conversation("c1")
        assert await conversations.create(conv) == (conv, True)
        assert await conversations.get("c1") == conv

    async def test_get_of_an_unknown_id_is_none(self, conversations):
        assert await conversations.get("no-such-conversation") is None

    async def test_taken_conversation_id_is_a_duplicate_key(self, conversations):
        await conversations.create(conversation("c1"))
        with pytest.raises(DuplicateKey) as refused:
            await conversations.create(conversation("c1", members=("carol",)))
        assert refused.value.key == "conversation_id"

    async def test_direct_key_returns_the_existing_conversation(self, conversations):
        first = conversation("d1", kind="direct")
        assert await conversations.create(first, direct_key="alice|bob") == (first, True)
        second = conversation("d2", kind="direct", at=T0 + timedelta(seconds=1))
        assert await conversations.create(second, direct_key="alice|bob") == (first, False)
        assert await conversations.get("d2") is None

    async def test_concurrent_creators_of_one_direct_key_agree_on_one(self, conversations):
        attempts = [conversation(kind="direct") for _ in range(10)]
        results = await asyncio.gather(*(conversations.create(c, direct_key="alice|bob") for c in attempts))
        winners = [conv for conv, created in results if created]
        assert len(winners) == 1
        assert {conv["conversation_id"] for conv, _ in results} == {winners[0]["conversation_id"]}
        assert ids(await conversations.list_for_user("alice", None, 100)) == [winners[0]["conversation_id"]]

    async def test_conversations_without_direct_key_never_collide(self, conversations):
        assert (await conversations.create(conversation("g1")))[1]
        assert (await conversations.create(conversation("g2")))[1]
        assert (await conversations.create(conversation("g3"), direct_key=None))[1]

    async def test_list_for_user_is_most_recent_first_and_limited(self, conversations):
        for n in range(5):
            await conversations.create(conversation(f"c{n}", at=T0 + timedelta(minutes=n)))
        await conversations.create(conversation("other", members=("carol",), at=T0 + timedelta(hours=1)))
        assert ids(await conversations.list_for_user("alice", None, 3)) == ["c4", "c3", "c2"]
        assert await conversations.list_for_user("nobody", None, 3) == []

    async def test_list_for_user_before_is_strictly_before(self, conversations):
        for n in range(5):
            await conversations.create(conversation(f"c{n}", at=T0 + timedelta(minutes=n)))
        page = await conversations.list_for_user("bob", T0 + timedelta(minutes=3), 10)
        assert ids(page) == ["c2", "c1", "c0"]

    async def test_paging_with_an_id_cursor_keeps_ties_at_the_boundary(self, conversations):
        for n in range(5):
            await conversations.create(conversation(f"t{n}", at=T0))     # all at the same instant
        seen, cursor = [], (None, None)
        while page := await conversations.list_for_user("alice", cursor[0], 2, before_id=cursor[1]):
            seen += ids(page)
            cursor = (page[-1]["last_activity_at"], page[-1]["conversation_id"])
        assert seen == ["t4", "t3", "t2", "t1", "t0"]

    async def test_list_for_user_pages_through_everything_once(self, conversations):
        for n in range(7):
            await conversations.create(conversation(f"c{n}", at=T0 + timedelta(minutes=n)))
        seen, before = [], None
        while page := await conversations.list_for_user("alice", before, 3):
            seen += ids(page)
            before = page[-1]["last_activity_at"]
        assert seen == [f"c{n}" for n in reversed(range(7))]

    async def test_pages_from_any_cursor_are_those_of_the_whole_list(self, conversations):
        # Sparse times, ties (at whole hours from each other, so on any edge a store may cut its
        # reads at), one in the future and some decades or centuries old: every page, from any
        # cursor and of any size, is the next slice of the user's whole list.
        hours = [0, 0, 0, 1, 1, 2, 15, 16, 16, 17, 31, 32, 48, 255, 256, 256, 257, 4096, 4112,
                 24 * 365, 24 * 365, 24 * 365 + 1, 24 * 400, 24 * 365 * 3]
        times = [T0 - timedelta(hours=h) for h in hours] + [
            T0 + timedelta(days=1), datetime(1970, 1, 1, tzinfo=timezone.utc),
            datetime(1900, 6, 1, tzinfo=timezone.utc), datetime(1, 1, 1, tzinfo=timezone.utc)]
        for n, at in enumerate(times):
            await conversations.create(conversation(f"c{n:02d}", at=at))
        await conversations.create(conversation("theirs", members=("carol",), at=T0 - timedelta(hours=1)))
        everything = sorted(((at, f"c{n:02d}") for n, at in enumerate(times)), reverse=True)
        assert ids(await conversations.list_for_user("alice", None, 100)) == [cid for _, cid in everything]
        assert await conversations.ids_for_member("alice", 100) == [cid for _, cid in everything]
        assert await conversations.ids_for_member("alice", 3) == [cid for _, cid in everything[:3]]
        for at, cid in everything:
            for limit in (1, 3, 100):
                after = [c for t, c in everything if (t, c) < (at, cid)][:limit]
                assert ids(await conversations.list_for_user("alice", at, limit, before_id=cid)) == after, (cid, limit)
                before = [c for t, c in everything if t < at][:limit]
                assert ids(await conversations.list_for_user("alice", at, limit)) == before, (cid, limit)

    async def test_paging_through_everything_returns_each_conversation_once_in_order(self, conversations):
        # As the gateway pages: limit + 1 asked, the cursor is the last one shown.
        times = [T0 - timedelta(minutes=7 * (n // 3)) for n in range(90)] + \
                [T0 - timedelta(days=d) for d in (3, 3, 40, 41, 700, 5000)]
        for n, at in enumerate(times):
            await conversations.create(conversation(f"c{n:02d}", at=at))
        everything = [cid for _, cid in sorted(((at, f"c{n:02d}") for n, at in enumerate(times)), reverse=True)]
        for size in (1, 4, 25):
            seen, cursor = [], (None, None)
            while True:
                page = await conversations.list_for_user("alice", cursor[0], size + 1, before_id=cursor[1])
                seen += ids(page[:size])
                if len(page) <= size:
                    break
                cursor = (page[size - 1]["last_activity_at"], page[size - 1]["conversation_id"])
            assert seen == everything, size

    async def test_save_progress_sets_the_projection_and_raises_activity(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.save_progress("c1", {
            "state_seq": 5, "last_seq": 5, "message_count": 4, "members": ["alice", "carol"],
            "roles": {"alice": "owner", "carol": "member"}, "title": "new",
            "last_message": {"seq": 5, "body": "hi"}, "last_activity_at": T0 + timedelta(minutes=1)})
        got = await conversations.get("c1")
        assert (got["state_seq"], got["last_seq"], got["message_count"]) == (5, 5, 4)
        assert got["members"] == ["alice", "carol"] and got["title"] == "new"
        assert got["last_message"]["body"] == "hi" and got["last_activity_at"] == T0 + timedelta(minutes=1)

    async def test_save_progress_never_undoes_a_newer_checkpoint(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.save_progress("c1", {"state_seq": 9, "last_seq": 9, "title": "nine",
                                                 "last_activity_at": T0 + timedelta(minutes=2)})
        await conversations.save_progress("c1", {"state_seq": 7, "last_seq": 7, "title": "seven",
                                                 "last_activity_at": T0 + timedelta(minutes=1)})
        got = await conversations.get("c1")
        assert (got["state_seq"], got["title"], got["last_activity_at"]) == (9, "nine", T0 + timedelta(minutes=2))

    async def test_activity_reorders_the_users_list(self, conversations):
        await conversations.create(conversation("old", at=T0))
        await conversations.create(conversation("new", at=T0 + timedelta(minutes=1)))
        await conversations.save_progress("old", {"state_seq": 1, "last_activity_at": T0 + timedelta(minutes=2)})
        assert ids(await conversations.list_for_user("alice", None, 10)) == ["old", "new"]

    async def test_a_save_not_in_full_is_read_back_but_leaves_the_list_position(self, conversations):
        await conversations.create(conversation("old", at=T0))
        await conversations.create(conversation("new", at=T0 + timedelta(minutes=1)))
        await conversations.save_progress("old", {
            "state_seq": 3, "last_seq": 3, "message_count": 3, "last_message": {"seq": 3, "body": "hey"},
            "last_activity_at": T0 + timedelta(minutes=2)}, reads={"alice": (3, 3)}, full=False)
        got = await conversations.get("old")
        assert (got["state_seq"], got["last_seq"], got["message_count"]) == (3, 3, 3)
        assert got["last_message"]["body"] == "hey" and got["reads"] == {"alice": {"seq": 3, "count": 3}}
        assert got["last_activity_at"] == T0                       # the list position did not move...
        listed = await conversations.list_for_user("alice", None, 10)
        assert ids(listed) == ["new", "old"]
        assert listed[1]["message_count"] == 3 and listed[1]["reads"]["alice"]["seq"] == 3   # ...its numbers did
        await conversations.save_progress("old", {"state_seq": 4, "last_seq": 4, "message_count": 4,
                                                  "last_activity_at": T0 + timedelta(minutes=3)})
        assert ids(await conversations.list_for_user("alice", None, 10)) == ["old", "new"]
        assert (await conversations.get("old"))["message_count"] == 4

    async def test_a_full_save_older_than_a_partial_one_does_not_undo_it(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.save_progress("c1", {"state_seq": 6, "last_seq": 6, "message_count": 6}, full=False)
        await conversations.save_progress("c1", {"state_seq": 5, "last_seq": 5, "message_count": 5,
                                                 "last_activity_at": T0 + timedelta(minutes=1)})
        got = await conversations.get("c1")
        assert (got["state_seq"], got["message_count"]) == (6, 6)

    async def test_save_progress_applies_to_a_conversation_without_a_checkpoint(self, conversations):
        conv = conversation("c1")
        del conv["state_seq"]
        await conversations.create(conv)
        await conversations.save_progress("c1", {"state_seq": 3, "last_seq": 3})
        assert (await conversations.get("c1"))["state_seq"] == 3

    async def test_save_progress_never_creates_a_conversation(self, conversations):
        await conversations.save_progress("ghost", {"state_seq": 1})
        assert await conversations.get("ghost") is None

    async def test_ids_for_member_are_the_users_conversations_most_recent_first(self, conversations):
        for n in range(4):
            await conversations.create(conversation(f"c{n}", at=T0 + timedelta(minutes=n)))
        await conversations.create(conversation("theirs", members=("carol",), at=T0 + timedelta(hours=1)))
        await conversations.save_progress("c0", {"state_seq": 1, "last_activity_at": T0 + timedelta(minutes=9)})
        assert await conversations.ids_for_member("alice", 10) == ["c0", "c3", "c2", "c1"]
        assert await conversations.ids_for_member("alice", 2) == ["c0", "c3"]
        assert await conversations.ids_for_member("nobody", 10) == []
        assert await conversations.ids_for_member("alice", 0) == []

    async def test_direct_peers_are_the_other_members_of_direct_conversations_only(self, conversations):
        await conversations.create(conversation("d1", members=("alice", "bob"), kind="direct"), direct_key="a:b")
        await conversations.create(conversation("d2", members=("carol", "alice"), kind="direct"), direct_key="a:c")
        await conversations.create(conversation("g1", members=("alice", "dave")))
        assert sorted(await conversations.direct_peers("alice")) == ["bob", "carol"]

    async def test_read_cursor_only_moves_forward(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.set_reads("c1", {"alice": (5, 3)})
        await conversations.set_reads("c1", {"alice": (4, 2), "bob": (1, 1)})
        got = await conversations.get("c1")
        assert got["reads"] == {"alice": {"seq": 5, "count": 3}, "bob": {"seq": 1, "count": 1}}

    async def test_save_progress_raises_cursors_in_the_same_write(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.set_reads("c1", {"bob": (7, 7)})
        await conversations.save_progress("c1", {"state_seq": 5, "last_seq": 5},
                                          reads={"alice": (5, 3), "bob": (2, 2)})
        got = await conversations.get("c1")
        assert got["state_seq"] == 5
        assert got["reads"] == {"alice": {"seq": 5, "count": 3}, "bob": {"seq": 7, "count": 7}}

    async def test_cursors_apply_even_when_the_checkpoint_is_stale(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.save_progress("c1", {"state_seq": 9, "title": "nine"})
        await conversations.save_progress("c1", {"state_seq": 7, "title": "seven"}, reads={"alice": (7, 6)})
        got = await conversations.get("c1")
        assert (got["state_seq"], got["title"]) == (9, "nine")
        assert got["reads"] == {"alice": {"seq": 7, "count": 6}}

    async def test_keys_left_out_of_a_checkpoint_are_left_alone(self, conversations):
        await conversations.create(conversation("c1"))
        before = await conversations.get("c1")
        await conversations.save_progress("c1", {"state_seq": 3, "last_seq": 3, "message_count": 3})
        got = await conversations.get("c1")
        assert (got["members"], got.get("roles"), got.get("title")) == \
            (before["members"], before.get("roles"), before.get("title"))
        assert got["message_count"] == 3


def clocked(stores: MongoStores, now: datetime) -> MongoConversationStore:
    """The stores' conversation store with its clock at ``now`` (where a first page's reads start)."""
    store = stores.conversations
    return MongoConversationStore(store._conversations, store._hot, progress=store._progress,
                                  clock=lambda: now.timestamp())


class TestMongoConversationStore(ConversationStoreContract):
    @pytest.fixture
    def conversations(self, mongo_stores):
        # Now is T0, among the tests' times, whatever today's date.
        return clocked(mongo_stores, T0)

    async def test_a_page_reads_a_window_of_times_not_all_of_the_users_conversations(self, mongo_stores):
        # SecantusDB reads the whole index range of a sorted, limited query, so what bounds a page's
        # cost is the range of times it asks for: a page must not ask for all of a user's
        # conversations (5,000, 1,000-member groups among them: 250 ms a page).
        conversations = clocked(mongo_stores, T0)
        for n in range(300):                                  # one every 10 minutes back from T0
            await conversations.create(conversation(f"c{n:03d}", at=T0 - timedelta(minutes=10 * n)))
        db = mongo_stores.conversations._conversations.database

        async def oldest_time_asked(read):
            await db["system.profile"].drop()
            await db.command("profile", 2)
            try:
                result = await read()
            finally:
                await db.command("profile", 0)
            asked = [e["command"].get("filter") or e["command"]["pipeline"][0]["$match"]
                     async for e in db["system.profile"].find({"ns": db.name + ".conversations"})]
            assert asked and all(f["members"] == "alice" for f in asked), asked
            lows = [f.get("last_activity_at", {}).get("$gt") for f in asked]
            return result, None if None in lows else min(lows)

        cursor = T0 - timedelta(minutes=1000)                 # c100
        page, oldest = await oldest_time_asked(lambda: conversations.list_for_user("alice", cursor, 10, "c100"))
        assert ids(page) == [f"c{n}" for n in range(101, 111)]
        assert oldest is not None and oldest >= cursor - timedelta(hours=6)    # 36 of 199 older ones at most
        page, oldest = await oldest_time_asked(lambda: conversations.list_for_user("alice", None, 10))
        assert ids(page) == [f"c{n:03d}" for n in range(10)]
        assert oldest is not None and oldest >= T0 - timedelta(hours=6)
        found, oldest = await oldest_time_asked(lambda: conversations.ids_for_member("alice", 10))
        assert found == [f"c{n:03d}" for n in range(10)]
        assert oldest is not None and oldest >= T0 - timedelta(hours=6)

    async def test_a_save_not_in_full_does_not_write_the_conversation_document(self, conversations, mongo_stores):
        # The point of the split: the document indexed by member is not rewritten per message.
        await conversations.create(conversation("c1"))
        raw = mongo_stores.conversations._conversations
        before = await raw.find_one({"_id": "c1"})
        await conversations.save_progress("c1", {"state_seq": 2, "last_seq": 2, "message_count": 2,
                                                 "last_activity_at": T0 + timedelta(minutes=1)},
                                          reads={"bob": (2, 2)}, full=False)
        await conversations.set_reads("c1", {"alice": (2, 2)})
        assert await raw.find_one({"_id": "c1"}) == before

    async def test_a_full_save_writes_the_conversation_document_alone(self, conversations, mongo_stores):
        # One write, not two: a 1:1 chat makes every message a full save. The progress document
        # stays behind, and reads take the newer checkpoint and the higher cursors of the two.
        await conversations.create(conversation("c1"))
        await conversations.save_progress("c1", {"state_seq": 3, "last_seq": 3, "message_count": 3},
                                          reads={"alice": (3, 3), "bob": (1, 1)}, full=False)
        progress = mongo_stores.conversations._progress
        before = await progress.find_one({"_id": "c1"})
        await conversations.save_progress("c1", {"state_seq": 4, "last_seq": 4, "message_count": 4,
                                                 "last_activity_at": T0 + timedelta(minutes=3)},
                                          reads={"alice": (2, 2), "bob": (4, 4)}, full=True)
        assert await progress.find_one({"_id": "c1"}) == before
        got = await conversations.get("c1")
        assert (got["state_seq"], got["message_count"], got["last_activity_at"]) == (4, 4, T0 + timedelta(minutes=3))
        assert got["reads"] == {"alice": {"seq": 3, "count": 3}, "bob": {"seq": 4, "count": 4}}
        await conversations.save_progress("c1", {"state_seq": 5, "last_seq": 5, "message_count": 5}, full=False)
        got = await conversations.get("c1")
        assert (got["state_seq"], got["message_count"]) == (5, 5)
        assert ids(await conversations.list_for_user("alice", None, 10)) == ["c1"]

    async def test_direct_peers_reads_only_direct_conversations(self, conversations, mongo_stores):
        # Presence changes run this query; through the member index it would fetch every group
        # of the user (a 1,000-member document each) only to drop it.
        await conversations.create(conversation("d1", members=("alice", "bob"), kind="direct"), direct_key="a:b")
        await conversations.create(conversation("g1", members=("alice", *(f"m{i}" for i in range(50)))))
        await conversations.create(conversation("g2", members=("alice", "dave")))
        raw = mongo_stores.conversations._conversations
        plan = await raw.find({"members": "alice", "kind": "direct"}, {"members": 1}).explain()
        # The plan, not executionStats: SecantusDB reports docs examined = returned for any index scan.
        assert "'indexName': 'direct_members'" in str(plan["queryPlanner"]["winningPlan"])
        assert await conversations.direct_peers("alice") == ["bob"]

    async def test_cursors_and_checkpoints_of_an_older_deployment_merge_with_the_new_ones(
            self, conversations, mongo_stores):
        # Before the split, the checkpoint and cursors lived in the conversation document.
        await conversations.create(conversation("c1"))
        raw = mongo_stores.conversations._conversations
        await raw.update_one({"_id": "c1"}, {"$set": {"state_seq": 7, "last_seq": 7, "message_count": 7,
                                                      "reads": {"alice": {"seq": 7, "count": 7},
                                                                "bob": {"seq": 2, "count": 2}}}})
        got = await conversations.get("c1")
        assert (got["state_seq"], got["message_count"]) == (7, 7)
        await conversations.set_reads("c1", {"bob": (5, 5)})
        got = await conversations.get("c1")
        assert got["reads"] == {"alice": {"seq": 7, "count": 7}, "bob": {"seq": 5, "count": 5}}
        assert got["state_seq"] == 7                  # a cursor-only progress document is no checkpoint
        await conversations.save_progress("c1", {"state_seq": 8, "last_seq": 8, "message_count": 8}, full=False)
        assert (await conversations.get("c1"))["message_count"] == 8

    async def test_a_checkpoint_resent_after_a_lost_reply_lands_once(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.conversations
        await store.create(conversation("c1"))
        await mongo_faults.lose_next_reply("update")
        await store.save_progress("c1", {"state_seq": 4, "last_seq": 4, "message_count": 4,
                                         "last_activity_at": T0 + timedelta(minutes=1)}, reads={"alice": (4, 4)})
        got = await store.get("c1")
        assert (got["state_seq"], got["message_count"], got["reads"]) == (4, 4, {"alice": {"seq": 4, "count": 4}})

    async def test_read_cursors_resent_after_a_lost_reply_land_once(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.conversations
        await store.create(conversation("c1"))
        await mongo_faults.lose_next_reply("update")
        await store.set_reads("c1", {"bob": (3, 2)})
        assert (await store.get("c1"))["reads"] == {"bob": {"seq": 3, "count": 2}}

    async def test_a_checkpoint_whose_replies_are_lost_twice_reports_the_store_unavailable(
            self, faulty_mongo_stores, mongo_faults):
        # One re-send, as the driver's retryable writes: after that the outcome is the caller's
        # to find out (the conversation actor reloads before its next write).
        # The progress document's re-send finds its own upsert (a duplicate _id: a checkpoint at
        # least as new is stored), so its outcome is known; the conversation document's is not.
        store = faulty_mongo_stores.conversations
        await store.create(conversation("c1"))
        await mongo_faults.lose_next_reply("update", times=4)
        with pytest.raises(StoreUnavailable):
            await store.save_progress("c1", {"state_seq": 4, "last_seq": 4})
        assert (await store.get("c1"))["state_seq"] == 4      # applied: only the reply was lost

    async def test_a_progress_write_whose_replies_are_lost_twice_is_known_to_have_landed(
            self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.conversations
        await store.create(conversation("c1"))
        await mongo_faults.lose_next_reply("update", times=2)
        await store.save_progress("c1", {"state_seq": 4, "last_seq": 4, "message_count": 4}, full=False)
        got = await store.get("c1")
        assert (got["state_seq"], got["message_count"]) == (4, 4)

    async def test_create_resent_after_a_lost_reply_still_reports_created(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.conversations
        conv = conversation("d1", kind="direct")
        await mongo_faults.lose_next_reply("insert")
        assert await store.create(conv, direct_key="alice|bob") == (conv, True)
