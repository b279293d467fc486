"""MediaStore contract: every adapter subclasses MediaStoreContract with a ``media`` fixture."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from storage.errors import DuplicateKey
from storage.ports import MediaStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def record(media_id: str, owner: str = "alice", at: datetime = T0) -> dict:
    return {"media_id": media_id, "owner_id": owner, "key": f"{owner}/{media_id}", "filename": "a.png",
            "content_type": "image/png", "size": 10, "created_at": at}


class MediaStoreContract:
    @pytest.fixture
    def media(self) -> MediaStore:
        raise NotImplementedError

    async def test_a_new_record_is_pending_and_unverified(self, media):
        await media.create(record("m1"))
        got = await media.get("m1")
        assert got == {**record("m1"), "conversations": [], "verified": False, "attached": False}
        assert await media.get("m2") is None

    async def test_an_id_is_used_once(self, media):
        await media.create(record("m1"))
        with pytest.raises(DuplicateKey) as info:
            await media.create(record("m1", owner="bob"))
        assert info.value.key == "media_id"
        assert (await media.get("m1"))["owner_id"] == "alice"

    async def test_the_owner_attaches_once_per_conversation(self, media):
        await media.create(record("m1"))
        assert await media.attach("m1", "alice", "c1") is True
        assert await media.attach("m1", "alice", "c1") is True
        assert await media.attach("m1", "alice", "c2") is True
        got = await media.get("m1")
        assert (got["conversations"], got["verified"], got["attached"]) == (["c1", "c2"], True, True)

    async def test_release_forgets_one_conversation_and_the_last_makes_it_pending(self, media):
        await media.create(record("m1"))
        await media.attach("m1", "alice", "c1")
        await media.attach("m1", "alice", "c2")
        await media.release("m1", "c1")
        got = await media.get("m1")
        assert (got["conversations"], got["attached"]) == (["c2"], True)
        for _ in range(2):                     # idempotent
            await media.release("m1", "c2")
        got = await media.get("m1")
        assert (got["conversations"], got["attached"], got["verified"]) == ([], False, True)
        assert await media.pending("alice") == (1, T0)
        assert [r["media_id"] for r in await media.claim_unattached(T0 + DAY, 10)] == ["m1"]
        await media.release("nope", "c1")      # no record: nothing happens

    async def test_a_released_upload_can_be_attached_again_before_a_sweep(self, media):
        await media.create(record("m1"))
        await media.attach("m1", "alice", "c1")
        await media.release("m1", "c1")
        assert await media.attach("m1", "alice", "c3") is True
        got = await media.get("m1")
        assert (got["conversations"], got["attached"]) == (["c3"], True)
        assert await media.claim_unattached(T0 + DAY, 10) == []

    async def test_nobody_else_attaches_and_unknown_ids_attach_nothing(self, media):
        await media.create(record("m1"))
        assert await media.attach("m1", "bob", "c1") is False
        assert await media.attach("nope", "alice", "c1") is False
        assert (await media.get("m1"))["conversations"] == []

    async def test_pending_counts_the_owners_unattached_records(self, media):
        assert await media.pending("alice") == (0, None)
        for i, at in enumerate((T0 + DAY, T0, T0 + 2 * DAY)):
            await media.create(record(f"m{i}", at=at))
        await media.create(record("b1", owner="bob"))
        await media.attach("m1", "alice", "c1")
        assert await media.pending("alice") == (2, T0 + DAY)

    async def test_a_sweep_claims_only_old_pending_records(self, media):
        await media.create(record("old"))
        await media.create(record("old-attached"))
        await media.attach("old-attached", "alice", "c1")
        await media.create(record("new", at=T0 + DAY))
        claimed = await media.claim_unattached(T0 + timedelta(hours=1), 10)
        assert [r["media_id"] for r in claimed] == ["old"]

    async def test_a_claimed_record_can_no_longer_be_attached(self, media):
        await media.create(record("m1"))
        await media.claim_unattached(T0 + DAY, 10)
        assert await media.attach("m1", "alice", "c1") is False
        assert (await media.get("m1"))["attached"] is False

    async def test_claims_are_returned_again_until_deleted(self, media):
        await media.create(record("m1"))
        assert len(await media.claim_unattached(T0 + DAY, 10)) == 1
        assert [r["media_id"] for r in await media.claim_unattached(T0 + DAY, 10)] == ["m1"]
        await media.delete("m1")
        await media.delete("m1")            # idempotent
        assert await media.claim_unattached(T0 + DAY, 10) == []
        assert await media.get("m1") is None

    async def test_claims_respect_the_limit(self, media):
        for i in range(5):
            await media.create(record(f"m{i}"))
        assert len(await media.claim_unattached(T0 + DAY, 3)) == 3

    async def test_attach_and_sweep_racing_never_both_win(self, media):
        """Either the upload is attached and kept, or claimed and gone: never attached and swept."""
        for i in range(20):
            await media.create(record(f"m{i}"))
        results = await asyncio.gather(media.claim_unattached(T0 + DAY, 100),
                                       *(media.attach(f"m{i}", "alice", "c1") for i in range(20)))
        claimed = {r["media_id"] for r in results[0]}
        attached = {f"m{i}" for i, ok in enumerate(results[1:]) if ok}
        assert claimed.isdisjoint(attached)
        assert claimed | attached == {f"m{i}" for i in range(20)}


class TestMongoMediaStore(MediaStoreContract):
    @pytest.fixture
    def media(self, mongo_stores):
        return mongo_stores.media
