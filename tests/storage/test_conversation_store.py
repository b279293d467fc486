"""ConversationStore contract: every adapter subclasses ConversationStoreContract with a
``conversations`` fixture."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from storage.errors import DuplicateKey
from storage.ports import ConversationStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms


def conversation(cid: str | None = None, *, members: tuple[str, ...] = ("alice", "bob"), kind: str = "group",
                 at: datetime = T0, last_seq: int = 0) -> dict[str, Any]:
    return {
        "conversation_id": cid or uuid.uuid4().hex, "kind": kind, "title": "t",
        "members": list(members), "roles": {m: "member" for m in members},
        "created_at": at, "last_seq": last_seq, "last_activity_at": at,
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

    async def test_list_for_user_pages_through_everything_once(self, conversations):
        for n in range(7):
            await conversations.create(conversation(f"c{n}", at=T0 + timedelta(minutes=n)))
        seen, before = [], None
        while page := await conversations.list_for_user("alice", before, 3):
            seen += ids(page)
            before = page[-1]["last_activity_at"]
        assert seen == [f"c{n}" for n in reversed(range(7))]

    async def test_record_activity_raises_seq_and_time(self, conversations):
        await conversations.create(conversation("c1"))
        await conversations.record_activity("c1", 5, T0 + timedelta(minutes=1))
        got = await conversations.get("c1")
        assert (got["last_seq"], got["last_activity_at"]) == (5, T0 + timedelta(minutes=1))

    async def test_record_activity_never_lowers_either_value(self, conversations):
        await conversations.create(conversation("c1", last_seq=10, at=T0))
        await conversations.record_activity("c1", 3, T0 + timedelta(minutes=1))
        await conversations.record_activity("c1", 12, T0 - timedelta(minutes=1))
        got = await conversations.get("c1")
        assert (got["last_seq"], got["last_activity_at"]) == (12, T0 + timedelta(minutes=1))

    async def test_record_activity_reorders_the_users_list(self, conversations):
        await conversations.create(conversation("old", at=T0))
        await conversations.create(conversation("new", at=T0 + timedelta(minutes=1)))
        await conversations.record_activity("old", 1, T0 + timedelta(minutes=2))
        assert ids(await conversations.list_for_user("alice", None, 10)) == ["old", "new"]

    async def test_record_activity_never_creates_a_conversation(self, conversations):
        await conversations.record_activity("ghost", 1, T0)
        assert await conversations.get("ghost") is None


class TestMongoConversationStore(ConversationStoreContract):
    @pytest.fixture
    def conversations(self, mongo_stores):
        return mongo_stores.conversations

    async def test_create_resent_after_a_lost_reply_still_reports_created(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.conversations
        conv = conversation("d1", kind="direct")
        await mongo_faults.lose_next_reply("insert")
        assert await store.create(conv, direct_key="alice|bob") == (conv, True)
