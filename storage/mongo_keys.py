"""KeyStore on MongoDB: bundles keyed by user, one document per one-time prekey.

A prekey is claimed with a conditional update that sets ``claimed_at`` on one still
unclaimed; the server applies it atomically to a single document, so two callers can never
take the same prekey (on both mongod and SecantusDB). Claimed prekeys are kept, not
deleted: the unique index on (user_id, identity, key_id) then also refuses a re-upload
of a key_id that was already handed out, so a retried upload can never put a used
prekey back. (A TTL index on ``claimed_at`` could purge them once key_ids are known
never to be reused; not done yet.)

Prekeys are tagged with a digest of the identity key they were uploaded under
(``identity``), never the key itself: the tag keeps index entries small, and a
lookup by the current identity skips prekeys made under a replaced one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Sequence

from bson.errors import BSONError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from storage.errors import DuplicateKey, StoreRejected
from storage.mongo_common import DUPLICATE_KEY, Index, ensure, mongo_errors, rename, translate
from storage.ports import KeyBundle, OneTimePrekey

_BUNDLE_ID = Index("_id_", (("_id", 1),), key="user_id", unique=True, builtin=True)
BUNDLE_INDEXES = (_BUNDLE_ID,)

PREKEY = Index("user_identity_key_id", (("user_id", 1), ("identity", 1), ("key_id", 1)),
               key="key_id", unique=True)
# claim_prekey and count_prekeys filter on claimed_at: with it in the index, neither
# has to step over the claimed prekeys a long-lived user accumulates.
UNCLAIMED = Index("user_identity_claimed", (("user_id", 1), ("identity", 1), ("claimed_at", 1), ("key_id", 1)))
PREKEY_INDEXES = (PREKEY, UNCLAIMED)
# How many of the lowest unclaimed prekeys one read fetches for claim_prekey to try in turn:
# enough that concurrent claims of one user's prekeys rarely need a second read.
_CLAIM_CANDIDATES = 8


def identity_tag(identity_key: str) -> str:
    return hashlib.sha256(identity_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class MongoKeyStore:
    def __init__(self, bundles: AsyncCollection, prekeys: AsyncCollection):
        self._bundles = bundles
        self._prekeys = prekeys

    async def ensure_indexes(self) -> None:
        await ensure(self._bundles, BUNDLE_INDEXES)
        await ensure(self._prekeys, PREKEY_INDEXES)

    async def put_bundle(self, user_id: str, identity_key: str, signed_prekey: str, at: datetime) -> None:
        update = {"$set": {"identity_key": identity_key, "signed_prekey": signed_prekey, "updated_at": at}}
        try:
            with mongo_errors(BUNDLE_INDEXES):
                await self._bundles.update_one({"_id": user_id}, update, upsert=True)
            return
        except DuplicateKey:
            pass
        # A concurrent first upload inserted the document between our miss and our insert:
        # it exists now, so a plain update applies ours (last writer wins).
        with mongo_errors(BUNDLE_INDEXES):
            await self._bundles.update_one({"_id": user_id}, update)

    async def get_bundle(self, user_id: str) -> KeyBundle | None:
        with mongo_errors(BUNDLE_INDEXES):
            doc = await self._bundles.find_one({"_id": user_id})
        return rename(doc, "_id", "user_id") if doc else None

    async def add_prekeys(self, user_id: str, identity_key: str, prekeys: Sequence[OneTimePrekey]) -> None:
        ids = [p["key_id"] for p in prekeys]
        if len(set(ids)) != len(ids):
            raise StoreRejected("key_id repeated within one upload")
        if not prekeys:
            return
        tag = identity_tag(identity_key)
        docs = [{"user_id": user_id, "identity": tag, "key_id": p["key_id"], "public_key": p["public_key"],
                 "claimed_at": None} for p in prekeys]
        try:
            # Unordered: a key_id uploaded before is refused by the unique index and the
            # rest are still inserted, which is exactly "skipped".
            await self._prekeys.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise translate(exc, PREKEY_INDEXES) from exc
        except (PyMongoError, BSONError) as exc:
            raise translate(exc, PREKEY_INDEXES) from exc

    async def claim_prekey(self, user_id: str, identity_key: str, at: datetime) -> OneTimePrekey | None:
        # A read of the lowest unclaimed prekeys, then a claim of one by UNCLAIMED's whole key; not
        # one findAndModify: SecantusDB writes a findAndModify by re-checking its filter as
        # {_id, $and: [filter]}, which scans the whole collection, and claimed prekeys are kept
        # forever. A claim that matches nothing lost its prekey to a concurrent caller (or to this
        # call's own write, re-sent after a lost reply: that prekey stays claimed and unreturned,
        # which "at most once" allows), so the next candidate is tried.
        unclaimed = {"user_id": user_id, "identity": identity_tag(identity_key), "claimed_at": None}
        while True:
            with mongo_errors(PREKEY_INDEXES):
                candidates = await (self._prekeys.find(unclaimed, {"_id": 0, "key_id": 1, "public_key": 1})
                                    .sort("key_id", 1).limit(_CLAIM_CANDIDATES).to_list())
            if not candidates:
                return None
            for prekey in candidates:
                with mongo_errors(PREKEY_INDEXES):
                    result = await self._prekeys.update_one({**unclaimed, "key_id": prekey["key_id"]},
                                                            {"$set": {"claimed_at": at}})
                if result.matched_count:
                    return prekey
            # Every candidate went to concurrent callers, each of whom took one: read again.

    async def count_prekeys(self, user_id: str, identity_key: str) -> int:
        with mongo_errors(PREKEY_INDEXES):
            return await self._prekeys.count_documents(
                {"user_id": user_id, "identity": identity_tag(identity_key), "claimed_at": None})
