"""IdentityStore on MongoDB: one document per OpenID Connect identity, unique on (issuer, subject).

The unique index is what makes ``link`` first-writer-wins: a second insert for the same identity
is refused by the server, and the loser reads the winner's link.
"""

from __future__ import annotations

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import DuplicateKey, StoreRejected
from storage.mongo_common import Index, ensure, mongo_errors
from storage.ports import Identity

ISSUER_SUBJECT = Index("issuer_subject", (("issuer", 1), ("subject", 1)), key="identity", unique=True)
INDEXES = (ISSUER_SUBJECT,)
_FIELDS = {"_id": 0, "issuer": 1, "subject": 1, "user_id": 1, "created_at": 1}


class MongoIdentityStore:
    def __init__(self, collection: AsyncCollection):
        self._identities = collection

    async def ensure_indexes(self) -> None:
        await ensure(self._identities, INDEXES)

    async def link(self, identity: Identity) -> Identity:
        missing = {"issuer", "subject", "user_id"} - set(identity)
        if missing:
            raise StoreRejected(f"an identity needs {', '.join(sorted(missing))}")
        try:
            with mongo_errors(INDEXES):
                # A copy: insert_one adds an _id to the document it is given.
                await self._identities.insert_one(dict(identity))
        except DuplicateKey:
            # Linked before (by another login, or by this insert re-sent after a lost reply).
            pass
        found = await self.find(identity["issuer"], identity["subject"])
        if found is None:
            raise StoreRejected("identity link vanished right after it was written")
        return found

    async def find(self, issuer: str, subject: str) -> Identity | None:
        with mongo_errors(INDEXES):
            return await self._identities.find_one({"issuer": issuer, "subject": subject}, _FIELDS)
