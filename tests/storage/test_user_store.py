"""UserStore contract: every adapter subclasses UserStoreContract with a ``users`` fixture."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from storage.errors import DuplicateKey, StoreRejected
from storage.ports import UserStore

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)   # ms precision: stores keep ms


def user(user_id: str = "u1", username: str = "alice") -> dict[str, Any]:
    return {"user_id": user_id, "username": username, "password_hash": "$argon2id$x",
            "display_name": username.title(), "created_at": T0}


class UserStoreContract:
    @pytest.fixture
    def users(self) -> UserStore:
        raise NotImplementedError

    async def test_created_user_reads_back_by_id_and_by_username(self, users):
        await users.create(user())
        assert await users.by_id("u1") == user()
        assert await users.by_username("alice") == user()

    async def test_unknown_user_is_none(self, users):
        assert await users.by_id("nobody") is None
        assert await users.by_username("nobody") is None

    async def test_username_lookup_is_exact(self, users):
        """Case folding is the caller's job: the store compares as stored."""
        await users.create(user())
        assert await users.by_username("Alice") is None

    async def test_taken_username_is_a_duplicate_key(self, users):
        await users.create(user("u1", "alice"))
        with pytest.raises(DuplicateKey) as refused:
            await users.create(user("u2", "alice"))
        assert refused.value.key == "username"
        assert await users.by_id("u2") is None

    async def test_taken_user_id_is_a_duplicate_key(self, users):
        await users.create(user("u1", "alice"))
        with pytest.raises(DuplicateKey) as refused:
            await users.create(user("u1", "bob"))
        assert refused.value.key == "user_id"
        assert await users.by_username("bob") is None

    async def test_update_profile_returns_and_stores_the_new_fields(self, users):
        await users.create(user())
        expected = {**user(), "display_name": "Alice B."}
        assert await users.update_profile("u1", {"display_name": "Alice B."}) == expected
        assert await users.by_id("u1") == expected

    async def test_update_profile_of_an_unknown_user_is_none_and_creates_nothing(self, users):
        assert await users.update_profile("ghost", {"display_name": "Boo"}) is None
        assert await users.by_id("ghost") is None

    async def test_update_profile_with_no_changes_returns_the_user(self, users):
        await users.create(user())
        assert await users.update_profile("u1", {}) == user()

    @pytest.mark.parametrize("field", ["username", "password_hash", "user_id", "created_at"])
    async def test_update_profile_refuses_identity_fields_and_writes_nothing(self, users, field):
        await users.create(user())
        with pytest.raises(StoreRejected):
            await users.update_profile("u1", {"display_name": "X", field: "mallory"})
        assert await users.by_id("u1") == user()


class TestMongoUserStore(UserStoreContract):
    @pytest.fixture
    def users(self, mongo_stores):
        return mongo_stores.users

    async def test_create_resent_after_a_lost_reply_is_no_conflict(self, faulty_mongo_stores, mongo_faults):
        store = faulty_mongo_stores.users
        await mongo_faults.lose_next_reply("insert")
        await store.create(user())
        assert await store.by_id("u1") == user()
