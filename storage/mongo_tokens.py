"""RefreshTokenStore on MongoDB: one document per token, ``token_hash`` stored as ``_id``.

Spending is a single conditional update whose filter is the whole "is it live and unspent?"
question, so the check and the change are one atomic step on the server: two requests racing
with one token cannot both win. A TTL index deletes each token once it has expired; until then
spent and revoked tokens stay, so a reused token is still recognised.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import DuplicateKey, StoreRejected
from storage.mongo_common import Index, as_stored, ensure, mongo_errors, rename
from storage.ports import RefreshToken

_ID = Index("_id_", (("_id", 1),), key="token_hash", unique=True, builtin=True)
FAMILY = Index("family", (("family_id", 1),))
# expireAfterSeconds=0: gone once expires_at has passed. MongoDB's TTL monitor runs about once a
# minute, so a token may outlive its expiry by that much; ``spend`` checks the time itself.
EXPIRY = Index("expiry", (("expires_at", 1),), expire_after_s=0)
INDEXES = (_ID, FAMILY, EXPIRY)


class MongoRefreshTokenStore:
    def __init__(self, collection: AsyncCollection):
        self._tokens = collection

    async def ensure_indexes(self) -> None:
        await ensure(self._tokens, INDEXES)

    async def insert(self, token: RefreshToken) -> None:
        if "token_hash" not in token:
            raise StoreRejected("a refresh token needs a token_hash")
        doc = rename({"spent": False, "revoked": False, "replaced_by": None, **token}, "token_hash", "_id")
        mine = as_stored(doc, self._tokens)
        try:
            with mongo_errors(INDEXES):
                await self._tokens.insert_one(doc)
            return
        except DuplicateKey as exc:
            refused = exc
        # An identical stored token is our own insert re-sent after its reply was lost.
        with mongo_errors(INDEXES):
            existing = await self._tokens.find_one({"_id": doc["_id"]})
        if existing != mine:
            raise refused

    async def get(self, token_hash: str) -> RefreshToken | None:
        with mongo_errors(INDEXES):
            doc = await self._tokens.find_one({"_id": token_hash})
        return rename(doc, "_id", "token_hash") if doc else None

    async def spend(self, token_hash: str, successor_hash: str, at: datetime) -> bool:
        # An update, then only if it matched nothing a read; not one findAndModify with an $or of
        # "unspent" and "spent by this very call". SecantusDB scans the whole collection for an $or
        # beside _id, and for the write of every findAndModify with a filter (it re-checks the
        # filter as {_id, $and: [filter]}); it reads each step here by _id alone.
        live = {"_id": token_hash, "revoked": False, "expires_at": {"$gt": at}}
        with mongo_errors(INDEXES):
            result = await self._tokens.update_one({**live, "spent": False},
                                                   {"$set": {"spent": True, "replaced_by": successor_hash}})
            if result.matched_count:
                return True
            # A resend of the winning call (its reply was lost) finds its own mark; any other
            # caller finds the token spent by someone else.
            return await self._tokens.find_one({**live, "replaced_by": successor_hash}, {"_id": 1}) is not None

    async def revoke_family(self, family_id: str) -> int:
        with mongo_errors(INDEXES):
            result = await self._tokens.update_many({"family_id": family_id, "revoked": False},
                                                    {"$set": {"revoked": True, "spent": True}})
        return result.modified_count
