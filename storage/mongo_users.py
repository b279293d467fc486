"""UserStore on MongoDB: ``user_id`` is stored as ``_id``; usernames are unique."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import DuplicateKey, StoreRejected
from storage.mongo_common import Index, as_stored, ensure, mongo_errors, rename
from storage.ports import PROFILE_FIELDS, User

_ID = Index("_id_", (("_id", 1),), key="user_id", unique=True, builtin=True)
USERNAME = Index("username", (("username", 1),), key="username", unique=True)
INDEXES = (_ID, USERNAME)


class MongoUserStore:
    def __init__(self, collection: AsyncCollection):
        self._users = collection

    async def ensure_indexes(self) -> None:
        await ensure(self._users, INDEXES)

    async def create(self, user: User) -> None:
        if "user_id" not in user:
            raise StoreRejected("a user needs a user_id")
        doc = rename(user, "user_id", "_id")
        mine = as_stored(doc, self._users)
        try:
            with mongo_errors(INDEXES):
                await self._users.insert_one(doc)
            return
        except DuplicateKey as exc:
            refused = exc
        # An identical stored user is our own insert, re-sent after its reply was lost
        # (SecantusDB does not dedupe retried writes; mongod does): not a conflict.
        with mongo_errors(INDEXES):
            existing = await self._users.find_one({"_id": doc["_id"]})
        if existing != mine:
            raise refused

    async def by_username(self, username: str) -> User | None:
        return await self._one({"username": username})

    async def by_id(self, user_id: str) -> User | None:
        return await self._one({"_id": user_id})

    async def update_profile(self, user_id: str, changes: dict[str, Any]) -> User | None:
        refused = sorted(set(changes) - PROFILE_FIELDS)
        if refused:
            raise StoreRejected(f"not profile fields: {', '.join(refused)}")
        if not changes:
            return await self.by_id(user_id)
        # An update, then a read by _id; not one findAndModify: SecantusDB writes a findAndModify
        # through {_id, $and: [filter]}, a scan of every user, so each profile change held the
        # store for as long as the user base is large (tests/storage/test_query_plans.py). A $set
        # re-sent after a lost reply writes the same values again, so a retry is harmless.
        with mongo_errors(INDEXES):
            result = await self._users.update_one({"_id": user_id}, {"$set": dict(changes)})
        if not result.matched_count:
            return None
        return await self.by_id(user_id)

    async def _one(self, query: dict[str, Any]) -> User | None:
        with mongo_errors(INDEXES):
            doc = await self._users.find_one(query)
        return rename(doc, "_id", "user_id") if doc else None
