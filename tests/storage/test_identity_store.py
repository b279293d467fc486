"""IdentityStore contract: every adapter subclasses IdentityStoreContract with an ``identities`` fixture."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from storage.errors import StoreRejected
from storage.ports import IdentityStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
ISS = "https://accounts.example.com"


def identity(subject: str = "sub-1", user_id: str = "u1", issuer: str = ISS) -> dict[str, Any]:
    return {"issuer": issuer, "subject": subject, "user_id": user_id, "created_at": T0}


class IdentityStoreContract:
    @pytest.fixture
    def identities(self) -> IdentityStore:
        raise NotImplementedError

    async def test_a_new_link_is_stored_and_returned(self, identities):
        assert await identities.link(identity()) == identity()
        assert await identities.find(ISS, "sub-1") == identity()

    async def test_unknown_identity_is_none(self, identities):
        assert await identities.find(ISS, "nobody") is None

    async def test_an_existing_link_is_never_overwritten(self, identities):
        await identities.link(identity(user_id="u1"))
        assert (await identities.link(identity(user_id="u2")))["user_id"] == "u1"
        assert (await identities.find(ISS, "sub-1"))["user_id"] == "u1"

    async def test_one_subject_at_two_issuers_is_two_identities(self, identities):
        """sub is only unique within its issuer (OpenID Connect Core §2)."""
        await identities.link(identity(issuer=ISS, user_id="u1"))
        await identities.link(identity(issuer="https://other.example.org", user_id="u2"))
        assert (await identities.find("https://other.example.org", "sub-1"))["user_id"] == "u2"

    async def test_lookup_is_exact(self, identities):
        await identities.link(identity(subject="Sub-1"))
        assert await identities.find(ISS, "sub-1") is None
        assert await identities.find(ISS + "/", "Sub-1") is None

    async def test_concurrent_links_of_one_identity_all_return_the_same_winner(self, identities):
        links = await asyncio.gather(*(identities.link(identity(user_id=f"u{i}")) for i in range(10)))
        assert len({link["user_id"] for link in links}) == 1
        assert await identities.find(ISS, "sub-1") == links[0]

    async def test_a_link_without_a_user_is_rejected(self, identities):
        with pytest.raises(StoreRejected):
            await identities.link({"issuer": ISS, "subject": "s"})


class TestMongoIdentityStore(IdentityStoreContract):
    @pytest.fixture
    def identities(self, mongo_stores):
        return mongo_stores.identities

    async def test_link_resent_after_a_lost_reply_returns_the_link(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.identities
        await mongo_faults.lose_next_reply("insert")
        assert await store.link(identity()) == identity()
