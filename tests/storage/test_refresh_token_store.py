"""RefreshTokenStore contract: every adapter subclasses RefreshTokenStoreContract with a ``tokens`` fixture."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from storage.errors import DuplicateKey
from storage.ports import RefreshTokenStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms
DAY = timedelta(days=1)


def token(token_hash: str = "h1", family_id: str = "f1", user_id: str = "u1", **more: Any) -> dict[str, Any]:
    return {"token_hash": token_hash, "family_id": family_id, "user_id": user_id, "created_at": T0,
            "expires_at": T0 + 30 * DAY, **more}


def stored(**changes: Any) -> dict[str, Any]:
    """``token()`` as the store returns it: its state fields filled in."""
    base = {"spent": False, "revoked": False, "replaced_by": None}
    base.update(token(**{k: v for k, v in changes.items() if k not in base}))
    base.update({k: v for k, v in changes.items() if k in base})
    return base


class RefreshTokenStoreContract:
    @pytest.fixture
    def tokens(self) -> RefreshTokenStore:
        raise NotImplementedError

    async def test_inserted_token_reads_back_live(self, tokens):
        await tokens.insert(token())
        assert await tokens.get("h1") == stored()

    async def test_unknown_hash_is_none(self, tokens):
        assert await tokens.get("nope") is None

    async def test_a_taken_hash_is_a_duplicate_key(self, tokens):
        await tokens.insert(token("h1", user_id="u1"))
        with pytest.raises(DuplicateKey) as refused:
            await tokens.insert(token("h1", user_id="u2"))
        assert refused.value.key == "token_hash"
        assert (await tokens.get("h1"))["user_id"] == "u1"

    async def test_inserting_the_identical_token_again_is_no_conflict(self, tokens):
        await tokens.insert(token())
        await tokens.insert(token())
        assert await tokens.get("h1") == stored()

    async def test_spending_a_live_token_marks_it_spent_and_replaced(self, tokens):
        await tokens.insert(token())
        assert await tokens.spend("h1", "h2", T0) is True
        assert await tokens.get("h1") == stored(spent=True, replaced_by="h2")

    async def test_a_spent_token_cannot_be_spent_again(self, tokens):
        await tokens.insert(token())
        await tokens.spend("h1", "h2", T0)
        assert await tokens.spend("h1", "h3", T0) is False
        assert (await tokens.get("h1"))["replaced_by"] == "h2"

    async def test_a_resent_spend_with_the_same_successor_succeeds_again(self, tokens):
        """A lost reply must not look like a reuse to the caller that won."""
        await tokens.insert(token())
        assert await tokens.spend("h1", "h2", T0) is True
        assert await tokens.spend("h1", "h2", T0) is True

    async def test_of_concurrent_spends_exactly_one_wins(self, tokens):
        await tokens.insert(token())
        results = await asyncio.gather(*(tokens.spend("h1", f"next-{i}", T0) for i in range(20)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert (await tokens.get("h1"))["replaced_by"] == f"next-{winner}"

    async def test_an_expired_token_is_not_spent(self, tokens):
        await tokens.insert(token(expires_at=T0))
        assert await tokens.spend("h1", "h2", T0) is False
        assert await tokens.get("h1") == stored(expires_at=T0)

    async def test_an_unknown_token_is_not_spent(self, tokens):
        assert await tokens.spend("nope", "h2", T0) is False

    async def test_revoke_family_revokes_and_spends_every_token_of_it(self, tokens):
        await tokens.insert(token("h1"))
        await tokens.spend("h1", "h2", T0)
        await tokens.insert(token("h2"))
        assert await tokens.revoke_family("f1") == 2
        assert await tokens.get("h1") == stored(token_hash="h1", spent=True, revoked=True, replaced_by="h2")
        assert await tokens.get("h2") == stored(token_hash="h2", spent=True, revoked=True)

    async def test_revoke_family_leaves_other_families_alone(self, tokens):
        await tokens.insert(token("h1", family_id="f1"))
        await tokens.insert(token("g1", family_id="f2"))
        await tokens.revoke_family("f1")
        assert await tokens.get("g1") == stored(token_hash="g1", family_id="f2")

    async def test_revoke_family_is_idempotent(self, tokens):
        await tokens.insert(token())
        await tokens.revoke_family("f1")
        assert await tokens.revoke_family("f1") == 0
        assert await tokens.revoke_family("no-such-family") == 0

    async def test_a_revoked_token_is_not_spent(self, tokens):
        await tokens.insert(token())
        await tokens.revoke_family("f1")
        assert await tokens.spend("h1", "h2", T0) is False

    async def test_a_resent_spend_after_revocation_fails(self, tokens):
        """Revocation wins over the resend rule: nothing of a revoked family is ever spendable."""
        await tokens.insert(token())
        await tokens.spend("h1", "h2", T0)
        await tokens.revoke_family("f1")
        assert await tokens.spend("h1", "h2", T0) is False


class TestMongoRefreshTokenStore(RefreshTokenStoreContract):
    @pytest.fixture
    def tokens(self, mongo_stores):
        return mongo_stores.refresh_tokens

    async def test_expired_tokens_are_deleted_by_a_ttl_index_on_expires_at(self, mongo_stores):
        info = await mongo_stores.refresh_tokens._tokens.index_information()
        ttl = [spec for spec in info.values() if "expireAfterSeconds" in spec]
        assert ttl == [{"v": 2, "key": [("expires_at", 1)], "expireAfterSeconds": 0}]

    async def test_only_the_hash_is_stored(self, mongo_stores):
        await mongo_stores.refresh_tokens.insert(token("h1"))
        doc = await mongo_stores.refresh_tokens._tokens.find_one({})
        assert set(doc) == {"_id", "family_id", "user_id", "created_at", "expires_at", "spent", "revoked",
                            "replaced_by"}

    async def test_insert_resent_after_a_lost_reply_is_no_conflict(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.refresh_tokens
        await mongo_faults.lose_next_reply("insert")
        await store.insert(token())
        assert await store.get("h1") == stored()

    async def test_spend_resent_after_a_lost_reply_still_wins(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.refresh_tokens
        await store.insert(token())
        await mongo_faults.lose_next_reply("update")
        assert await store.spend("h1", "h2", T0) is True
        assert await store.get("h1") == stored(spent=True, replaced_by="h2")
