"""MediaStore on MongoDB: one document per upload, ``media_id`` stored as ``_id``.

``attach`` and a sweep's claim are single-document conditional updates: the server applies each
atomically, so an upload is either attached (and kept) or claimed by a sweep (and removed), never
both, whatever runs concurrently on which replica.

``attached`` duplicates "conversations is not empty" so that the sweep and the per-user count
read an ordinary index; an index over an array that may be empty is multikey and would not
serve ``{conversations: []}`` the same way on every server.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import StoreRejected
from storage.mongo_common import Index, ensure, mongo_errors, rename
from storage.ports import Media

_ID = Index("_id_", (("_id", 1),), key="media_id", unique=True, builtin=True)
OWNER_PENDING = Index("owner_attached_created", (("owner_id", 1), ("attached", 1), ("created_at", 1)))
PENDING = Index("attached_created", (("attached", 1), ("created_at", 1)))
CLAIMED = Index("sweeping", (("sweeping", 1),), partial={"sweeping": True})
INDEXES = (_ID, OWNER_PENDING, PENDING, CLAIMED)


class MongoMediaStore:
    def __init__(self, collection: AsyncCollection):
        self._media = collection

    async def ensure_indexes(self) -> None:
        await ensure(self._media, INDEXES)

    async def create(self, media: Media) -> None:
        if "media_id" not in media:
            raise StoreRejected("a media record needs a media_id")
        doc = rename({**media, "conversations": [], "verified": False, "attached": False}, "media_id", "_id")
        with mongo_errors(INDEXES):
            await self._media.insert_one(doc)

    async def get(self, media_id: str) -> Media | None:
        with mongo_errors(INDEXES):
            doc = await self._media.find_one({"_id": media_id})
        return _record(doc) if doc else None

    async def attach(self, media_id: str, owner_id: str, conversation_id: str) -> bool:
        with mongo_errors(INDEXES):
            result = await self._media.update_one(
                {"_id": media_id, "owner_id": owner_id, "sweeping": {"$ne": True}},
                {"$addToSet": {"conversations": conversation_id}, "$set": {"verified": True, "attached": True}})
        return result.matched_count == 1

    async def release(self, media_id: str, conversation_id: str) -> None:
        # Two conditional steps, each atomic: an attach between them adds a conversation (and
        # sets attached), and the second step, which needs none left, then changes nothing.
        with mongo_errors(INDEXES):
            await self._media.update_one({"_id": media_id}, {"$pull": {"conversations": conversation_id}})
            await self._media.update_one({"_id": media_id, "conversations": {"$size": 0}, "attached": True},
                                         {"$set": {"attached": False}})

    async def pending(self, owner_id: str) -> tuple[int, datetime | None]:
        query = {"owner_id": owner_id, "attached": False}
        with mongo_errors(INDEXES):
            count = await self._media.count_documents(query)
            oldest = await self._media.find_one(query, {"created_at": 1}, sort=[("created_at", 1)]) if count else None
        return count, oldest["created_at"] if oldest else None

    async def claim_unattached(self, before: datetime, limit: int) -> list[Media]:
        with mongo_errors(INDEXES):
            ids = [d["_id"] async for d in self._media.find(
                {"attached": False, "created_at": {"$lt": before}, "sweeping": {"$ne": True}}, {"_id": 1},
                limit=limit)]
            if ids:
                # attached: False again, here: an upload attached since the find stays attached.
                await self._media.update_many({"_id": {"$in": ids}, "attached": False},
                                              {"$set": {"sweeping": True}})
            return [_record(d) async for d in self._media.find({"sweeping": True}, limit=limit)]

    async def delete(self, media_id: str) -> None:
        with mongo_errors(INDEXES):
            await self._media.delete_one({"_id": media_id})


def _record(doc: dict) -> Media:
    out = rename(doc, "_id", "media_id")
    out.pop("sweeping", None)
    return out
