"""EventStore on MongoDB: one document per event, fenced by unique indexes.

Events keep a driver-generated ObjectId ``_id`` that never leaves this module.
Both unique indexes start with ``conversation_id``, so they stay legal when the
collection is sharded on it.
"""

from __future__ import annotations

from typing import Any, Sequence

import pymongo
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from storage.errors import DuplicateEvent, StoreRejected
from storage.mongo_common import DUPLICATE_KEY, Index, ensure, index_hit, mongo_errors, translate
from storage.ports import Event

_ID = Index("_id_", (("_id", 1),), key="_id", unique=True, builtin=True)
SEQ = Index("conversation_seq", (("conversation_id", 1), ("seq", 1)), key="seq", unique=True)
CLIENT_MSG = Index(
    "conversation_sender_client_msg",
    (("conversation_id", 1), ("sender_id", 1), ("client_msg_id", 1)),
    key="client_msg_id",
    unique=True,
    # Only string ids take part, so any number of events without one (None) coexist.
    partial={"client_msg_id": {"$type": "string"}},
)
INDEXES = (_ID, SEQ, CLIENT_MSG)

_NO_ID = {"_id": 0}


class MongoEventStore:
    def __init__(self, collection: AsyncCollection, timeout_s: float):
        self._events = collection
        self._timeout_s = timeout_s

    async def ensure_indexes(self) -> None:
        await ensure(self._events, INDEXES)

    async def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        # Copies, with _ids we choose: the caller's dicts stay untouched, and every _id
        # is unique to this call, which is how a re-sent event is recognised below.
        docs = [{**{k: v for k, v in event.items() if k != "_id"}, "_id": ObjectId()} for event in events]
        start = 0
        # One deadline for the whole call, however many sends it takes.
        with pymongo.timeout(self._timeout_s):
            while start < len(docs):
                try:
                    await self._events.insert_many(docs[start:], ordered=True)
                    return
                except BulkWriteError as exc:
                    start = await self._resume_point(exc, docs, start)
                except PyMongoError as exc:
                    raise translate(exc, INDEXES) from exc

    async def _resume_point(self, exc: BulkWriteError, docs: list[dict[str, Any]], start: int) -> int:
        """Where to continue after an ordered insert stopped, or raise what it means."""
        errors = exc.details.get("writeErrors") or []
        if exc.details.get("writeConcernErrors") or not errors:
            raise translate(exc, INDEXES) from exc
        error = errors[0]                       # ordered: the only one
        position = start + error["index"]
        if error.get("code") != DUPLICATE_KEY:
            raise StoreRejected(f"event {position} refused: {error.get('errmsg')}") from exc
        # The event may be our own, stored by an earlier send of this very call whose
        # reply was lost: the driver re-sends retryable writes once. mongod dedupes
        # that re-send by txnNumber and never reports it; SecantusDB executes it again
        # and reports whichever unique index it checks first. So look for our _ids.
        ours = await self._stored_prefix(docs[position:])
        if ours:
            return position + ours
        index = index_hit(error, INDEXES)
        if index is None or index is _ID:
            raise StoreRejected(f"event {position} hit an unexpected unique index: {error.get('errmsg')}") from exc
        raise DuplicateEvent(index.key, position) from exc

    async def _stored_prefix(self, docs: list[dict[str, Any]]) -> int:
        """How many of ``docs``, counted from the first, are stored already."""
        ids = [doc["_id"] for doc in docs]
        try:
            found = {doc["_id"] async for doc in self._events.find({"_id": {"$in": ids}}, {"_id": 1})}
        except PyMongoError as exc:
            raise translate(exc, INDEXES) from exc
        count = 0
        while count < len(ids) and ids[count] in found:
            count += 1
        return count

    async def last_seq(self, conversation_id: str) -> int:
        with mongo_errors(INDEXES):
            doc = await self._events.find_one(
                {"conversation_id": conversation_id}, {"seq": 1, "_id": 0}, sort=[("seq", -1)]
            )
        return int(doc["seq"]) if doc else 0

    async def read_after(self, conversation_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._page({"conversation_id": conversation_id, "seq": {"$gt": after_seq}}, 1, limit)

    async def read_before(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Event]:
        query: dict[str, Any] = {"conversation_id": conversation_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        return await self._page(query, -1, limit)

    async def _page(self, query: dict[str, Any], direction: int, limit: int) -> list[Event]:
        # pymongo reads limit(0) as "no limit" and a negative one as "one batch".
        if limit <= 0:
            return []
        with mongo_errors(INDEXES):
            cursor = self._events.find(query, _NO_ID).sort("seq", direction).limit(limit)
            return await cursor.to_list()

    async def find_client_msg(self, conversation_id: str, sender_id: str, client_msg_id: str) -> Event | None:
        with mongo_errors(INDEXES):
            return await self._events.find_one(
                {"conversation_id": conversation_id, "sender_id": sender_id, "client_msg_id": client_msg_id},
                _NO_ID,
            )

    async def get(self, conversation_id: str, seq: int) -> Event | None:
        with mongo_errors(INDEXES):
            return await self._events.find_one({"conversation_id": conversation_id, "seq": seq}, _NO_ID)

    async def count_messages(self, conversation_id: str, upto_seq: int) -> int:
        with mongo_errors(INDEXES):
            return await self._events.count_documents(
                {"conversation_id": conversation_id, "seq": {"$lte": upto_seq}, "kind": "message"})

    # Projections: each is idempotent, so replaying an event after a crash changes nothing twice.
    async def edit_message(self, conversation_id: str, seq: int, body: str, edited_at) -> None:
        with mongo_errors(INDEXES):
            await self._events.update_one(
                {"conversation_id": conversation_id, "seq": seq, "kind": "message", "deleted": {"$ne": True},
                 "$or": [{"edited_at": {"$exists": False}}, {"edited_at": {"$lte": edited_at}}]},
                {"$set": {"body": body, "edited_at": edited_at}})

    async def erase_message(self, conversation_id: str, seq: int) -> None:
        with mongo_errors(INDEXES):
            await self._events.update_one(
                {"conversation_id": conversation_id, "seq": seq, "kind": "message"},
                {"$set": {"deleted": True}, "$unset": {"body": "", "attachments": "", "reactions": ""}})
            # The edits carried the text too: a deleted message leaves no copy of its body.
            await self._events.update_many(
                {"conversation_id": conversation_id, "kind": "edit", "target_seq": seq},
                {"$unset": {"body": ""}})

    async def set_reaction(self, conversation_id: str, seq: int, user_id: str, emoji: str, on: bool) -> None:
        entry = {"emoji": emoji, "user_id": user_id}
        op = {"$addToSet": {"reactions": entry}} if on else {"$pull": {"reactions": entry}}
        with mongo_errors(INDEXES):
            await self._events.update_one(
                {"conversation_id": conversation_id, "seq": seq, "kind": "message", "deleted": {"$ne": True}}, op)

    async def messages_before(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Event]:
        query: dict[str, Any] = {"conversation_id": conversation_id, "kind": "message"}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        return await self._page(query, -1, limit)

    async def last_membership_change(self, conversation_id: str, user_id: str, upto_seq: int) -> Event | None:
        with mongo_errors(INDEXES):
            return await self._events.find_one(
                {"conversation_id": conversation_id, "seq": {"$lte": upto_seq},
                 "kind": {"$in": ["member_added", "member_removed"]}, "user_ids": user_id},
                _NO_ID, sort=[("seq", -1)])
