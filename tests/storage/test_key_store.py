"""KeyStore contract: every adapter subclasses KeyStoreContract with a ``keys`` fixture."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from storage.errors import StoreRejected
from storage.ports import KeyStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms
IK, IK2 = "aWRlbnRpdHktMQ==", "aWRlbnRpdHktMg=="


def prekeys(*ids: int) -> list[dict]:
    return [{"key_id": i, "public_key": f"cGstJ{i}"} for i in ids]


class KeyStoreContract:
    @pytest.fixture
    def keys(self) -> KeyStore:
        raise NotImplementedError

    async def test_bundle_reads_back(self, keys):
        await keys.put_bundle("alice", IK, "c3BrLTE=", T0)
        assert await keys.get_bundle("alice") == {"user_id": "alice", "identity_key": IK,
                                                  "signed_prekey": "c3BrLTE=", "updated_at": T0}

    async def test_unknown_users_bundle_is_none(self, keys):
        assert await keys.get_bundle("nobody") is None

    async def test_put_bundle_replaces_both_keys(self, keys):
        await keys.put_bundle("alice", IK, "c3BrLTE=", T0)
        await keys.put_bundle("alice", IK2, "c3BrLTI=", T0 + timedelta(seconds=1))
        got = await keys.get_bundle("alice")
        assert (got["identity_key"], got["signed_prekey"]) == (IK2, "c3BrLTI=")

    async def test_concurrent_first_uploads_leave_one_of_them(self, keys):
        signed = [f"c3Br{i}" for i in range(8)]
        await asyncio.gather(*(keys.put_bundle("alice", IK, s, T0) for s in signed))
        assert (await keys.get_bundle("alice"))["signed_prekey"] in signed

    async def test_claims_hand_out_lowest_key_id_first_then_none(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(7, 3, 5))
        got = [await keys.claim_prekey("alice", IK, T0) for _ in range(4)]
        assert got == [*prekeys(3, 5, 7), None]

    async def test_count_is_what_is_left_unclaimed(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(1, 2, 3))
        await keys.claim_prekey("alice", IK, T0)
        assert await keys.count_prekeys("alice", IK) == 2
        assert await keys.count_prekeys("bob", IK) == 0

    async def test_prekeys_are_per_user(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(1))
        assert await keys.claim_prekey("bob", IK, T0) is None
        assert await keys.claim_prekey("alice", IK, T0) == prekeys(1)[0]

    async def test_uploads_append(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(1, 2))
        await keys.add_prekeys("alice", IK, prekeys(3))
        assert await keys.count_prekeys("alice", IK) == 3

    async def test_reuploaded_key_id_is_skipped_and_the_rest_added(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(1))
        await keys.add_prekeys("alice", IK, [{"key_id": 1, "public_key": "b3RoZXI="}, *prekeys(2)])
        assert [await keys.claim_prekey("alice", IK, T0) for _ in range(3)] == [*prekeys(1, 2), None]

    async def test_claimed_prekey_never_comes_back_on_reupload(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(1))
        assert await keys.claim_prekey("alice", IK, T0) == prekeys(1)[0]
        await keys.add_prekeys("alice", IK, prekeys(1))
        assert await keys.claim_prekey("alice", IK, T0) is None

    async def test_key_id_repeated_within_one_upload_is_rejected_whole(self, keys):
        with pytest.raises(StoreRejected):
            await keys.add_prekeys("alice", IK, [*prekeys(1, 2), *prekeys(1)])
        assert await keys.count_prekeys("alice", IK) == 0

    async def test_prekeys_of_a_replaced_identity_are_never_handed_out(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(1, 2))
        await keys.add_prekeys("alice", IK2, prekeys(1))
        assert await keys.count_prekeys("alice", IK2) == 1
        assert await keys.claim_prekey("alice", IK2, T0) == prekeys(1)[0]
        assert await keys.claim_prekey("alice", IK2, T0) is None

    async def test_twenty_concurrent_claims_of_five_prekeys_hand_each_out_once(self, keys):
        await keys.add_prekeys("alice", IK, prekeys(*range(5)))
        got = await asyncio.gather(*(keys.claim_prekey("alice", IK, T0) for _ in range(20)))
        handed = [g["key_id"] for g in got if g is not None]
        assert sorted(handed) == list(range(5))
        assert got.count(None) == 15
        assert await keys.count_prekeys("alice", IK) == 0


class TestMongoKeyStore(KeyStoreContract):
    @pytest.fixture
    def keys(self, mongo_stores):
        return mongo_stores.keys

    async def test_upload_resent_after_a_lost_reply_adds_each_prekey_once(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.keys
        await mongo_faults.lose_next_reply("insert")
        await store.add_prekeys("alice", IK, prekeys(1, 2))
        assert await store.count_prekeys("alice", IK) == 2

    async def test_claim_resent_after_a_lost_reply_hands_out_no_prekey_twice(self, faulty_mongo_stores,
                                                                             mongo_faults):
        store = faulty_mongo_stores.keys
        await store.add_prekeys("alice", IK, prekeys(1, 2, 3))
        await mongo_faults.lose_next_reply("update")
        first = await store.claim_prekey("alice", IK, T0)
        rest = [await store.claim_prekey("alice", IK, T0) for _ in range(3)]
        handed = [k for k in (first, *rest) if k is not None]
        assert len({k["key_id"] for k in handed}) == len(handed)
