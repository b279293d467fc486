"""BlockStore on MongoDB: one document per (blocker, blocked), kept unique by an index.

The unique index, not a read-then-write, is what makes ``block`` idempotent under
concurrent calls; it also serves ``list_blocked`` (a prefix scan, already in
``blocked`` order) and ``between``.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import DuplicateKey
from storage.mongo_common import Index, ensure, mongo_errors

PAIR = Index("blocker_blocked", (("blocker", 1), ("blocked", 1)), key="block", unique=True)
INDEXES = (PAIR,)


class MongoBlockStore:
    def __init__(self, collection: AsyncCollection):
        self._blocks = collection

    async def ensure_indexes(self) -> None:
        await ensure(self._blocks, INDEXES)

    async def block(self, blocker_id: str, blocked_id: str, at: datetime) -> None:
        # $setOnInsert: an existing block keeps its first time. Two racing upserts can
        # both miss and both insert; the unique index refuses the second, which means
        # the block exists: the outcome the caller asked for.
        try:
            with mongo_errors(INDEXES):
                await self._blocks.update_one({"blocker": blocker_id, "blocked": blocked_id},
                                              {"$setOnInsert": {"created_at": at}}, upsert=True)
        except DuplicateKey:
            pass

    async def unblock(self, blocker_id: str, blocked_id: str) -> None:
        with mongo_errors(INDEXES):
            await self._blocks.delete_one({"blocker": blocker_id, "blocked": blocked_id})

    async def list_blocked(self, blocker_id: str, limit: int) -> list[str]:
        if limit <= 0:                       # pymongo reads limit(0) as "no limit"
            return []
        with mongo_errors(INDEXES):
            cursor = (self._blocks.find({"blocker": blocker_id}, {"_id": 0, "blocked": 1})
                      .sort("blocked", 1).limit(limit))
            return [doc["blocked"] for doc in await cursor.to_list()]

    async def between(self, a: str, b: str) -> bool:
        # Not an $or of the two pairs: SecantusDB scans the whole collection for a top-level $or
        # (tests/storage/test_query_plans.py). mongod answers this query from four points of PAIR,
        # SecantusDB from the blocks of a and of b (PAIR's prefix: each user's own list). Of the
        # four pairs it matches, (a, a) and (b, b) are no answer unless a is b.
        with mongo_errors(INDEXES):
            docs = await self._blocks.find({"blocker": {"$in": [a, b]}, "blocked": {"$in": [a, b]}},
                                           {"_id": 0, "blocker": 1, "blocked": 1}).to_list()
        return any(doc["blocker"] != doc["blocked"] or a == b for doc in docs)
