"""EventStore on MongoDB: one document per event, fenced by unique indexes.

Events keep a driver-generated ObjectId ``_id`` that never leaves this module (search cursors
carry it, encoded). A message's search ``terms`` are stored with it and never read back.
Both unique indexes start with ``conversation_id``, so they stay legal when the
collection is sharded on it.
"""

from __future__ import annotations

import base64
import contextlib
import struct
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import bson
import pymongo
from bson import ObjectId
from bson.errors import BSONError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from storage.errors import DuplicateEvent, EventRefused, StoreRejected, counted
from storage.mongo_common import DUPLICATE_KEY, Index, ensure, index_hit, mongo_errors, resendable, resending, translate
from storage.ports import Event

_ID = Index("_id_", (("_id", 1),), key="_id", unique=True, builtin=True)
SEQ = Index("conversation_seq", (("conversation_id", 1), ("seq", 1)), key="seq", unique=True)
CLIENT_MSG = Index(
    "conversation_sender_client_msg_id",
    (("conversation_id", 1), ("sender_id", 1), ("client_msg_id", 1)),
    key="client_msg_id",
    unique=True,
    # Only string ids take part ("≥ ''" holds for every string and nothing else), so any number
    # of events without one (None) coexist. Not ``$type: "string"``, the same set: SecantusDB
    # never reads a ``$type`` partial index for a lookup, so a retried send's lookup
    # (find_client_msg) read the whole conversation (412 ms at 20,000 events; 0.6 ms now).
    partial={"client_msg_id": {"$gte": ""}},
)
# Indexes an earlier release created and this one replaces: dropped once their successor exists,
# so uniqueness is enforced throughout an upgrade. ``conversation_sender_client_msg`` is CLIENT_MSG
# with the ``$type`` filter.
RETIRED = ("conversation_sender_client_msg",)
# Search: a multikey index, one entry per (term, message). Serves "messages with term t in
# conversations c1..cn, newest first" from the index: the term pins the first field, the $in the
# second, and (on mongod) each (t, c) range is already in the sort's order, so mongod merges them
# instead of sorting. SecantusDB has no text index; it serves the same lookup as "equality, then
# one $in" (see _search_pipeline). Partial: only events with a term (terms are never empty
# strings, so "≥ ''" means "has one"); every other event (non-messages, e2ee messages, messages
# stored before search) costs no entry, and building the index over a collection of those only
# reads it (a third of the time, on SecantusDB). A term equality implies the filter, on mongod
# and SecantusDB alike, so searches may use the index.
SEARCH = Index("terms_conversation_time",
               (("terms", 1), ("conversation_id", 1), ("created_at", -1), ("_id", -1)),
               partial={"terms": {"$gte": ""}})
# Which messages attach a media: a deleted message's media is released unless another message
# of the conversation attaches it too (actors/conversation.py), and retention asks the same.
# Partial, as SEARCH: only messages with an attachment have entries.
ATTACHMENTS = Index("attachments_conversation", (("attachments", 1), ("conversation_id", 1)),
                    partial={"attachments": {"$gte": ""}})
# Whose membership changed, and when: what a socket's replay asks of every conversation it resumes
# (last_membership_change). Only events that name users (member_added, member_removed,
# role_changed) are in it, so a message's insert does not touch it.
MEMBERSHIP = Index("user_ids_conversation_seq", (("user_ids", 1), ("conversation_id", 1), ("seq", -1)),
                   partial={"user_ids": {"$gte": ""}})
# The edits of a message, which its delete strips of their copies of the text. Only edits are
# in it; without it the delete read every event of the conversation (SecantusDB served
# ``target_seq`` beside conversation_id from SEQ's prefix).
EDITS = Index("edits_conversation_target", (("conversation_id", 1), ("target_seq", 1)), partial={"kind": "edit"})
INDEXES = (_ID, SEQ, CLIENT_MSG, SEARCH, ATTACHMENTS, MEMBERSHIP, EDITS)
# How many seqs the first window of a history page spans, as a multiple of the page: SecantusDB
# reads a whole index range before it sorts and limits (mongod stops at the limit), so a page is
# read as windows of seq below ``before_seq``, each twice the last, never the conversation whole.
_WINDOW_PAGES = 2

INDEX_BUILD_TIMEOUT_S = 3600.0
_AS_READ = {"_id": 0, "terms": 0}     # what reads return: neither the _id nor the search terms


class MongoEventStore:
    def __init__(self, collection: AsyncCollection, timeout_s: float):
        self._events = collection
        self._timeout_s = timeout_s

    async def ensure_indexes(self) -> None:
        # A missing index is built over every stored event within the call (SEARCH, on the first
        # start after the upgrade that added it: ~0.03 ms per event on SecantusDB, which answers
        # nothing else meanwhile). SecantusDB abandons a build that outlives the client's deadline
        # and keeps nothing, so under the store timeout a large store could never get the index:
        # a build gets its own, long deadline. Looking first keeps the usual start (every index
        # there) and a down server as quick as any call.
        with mongo_errors(INDEXES):
            have = {index["name"] async for index in await self._events.list_indexes()}
        building = any(not index.builtin and index.name not in have for index in INDEXES)
        with pymongo.timeout(INDEX_BUILD_TIMEOUT_S) if building else contextlib.nullcontext():
            await ensure(self._events, INDEXES)
        for name in RETIRED:
            if name in have:
                await self._drop_index(name)

    async def _drop_index(self, name: str) -> None:
        try:
            with mongo_errors(INDEXES):
                await self._events.drop_index(name)
        except StoreRejected:
            # Another host dropped it first (IndexNotFound); anything else is a real failure.
            with mongo_errors(INDEXES):
                names = {index["name"] async for index in await self._events.list_indexes()}
            if name in names:
                raise

    async def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        # Copies, with _ids we choose: the caller's dicts stay untouched, and every _id
        # is unique to this call, which is how a re-sent event is recognised below.
        docs = [{**{k: v for k, v in event.items() if k != "_id"}, "_id": ObjectId()} for event in events]
        start, stop, resent = 0, len(docs), False
        refused: str | None = None
        # One deadline for the whole call, however many sends it takes.
        with pymongo.timeout(self._timeout_s):
            while start < stop:
                try:
                    await self._events.insert_many(docs[start:stop], ordered=True)
                    start = stop
                except (UnicodeEncodeError, BSONError) as exc:
                    # The driver could not encode one of them (a lone surrogate in a text): the
                    # events before it go alone, and it is refused, not the whole call.
                    bad = _first_unencodable(docs[start:stop])
                    if bad == stop - start:          # each one alone encodes: not an event's fault
                        raise counted("mongo", StoreRejected(f"events cannot be stored: {exc}"[:300])) from exc
                    stop = start + bad
                    refused = f"event {stop} cannot be stored: {exc}"[:300]
                except PyMongoError as exc:
                    # The client does not retry writes (MongoStores): a send whose outcome was
                    # lost goes once more, and whatever of it had been stored is recognised by
                    # its _id below, exactly as after a driver's re-send.
                    if not resent and resendable(exc):
                        resent = True
                        continue
                    if not isinstance(exc, BulkWriteError):
                        raise translate(exc, INDEXES) from exc
                    start = await self._resume_point(exc, docs, start)
        if refused is not None:
            raise counted("mongo", EventRefused(refused, stop))

    async def _resume_point(self, exc: BulkWriteError, docs: list[dict[str, Any]], start: int) -> int:
        """Where to continue after an ordered insert stopped, or raise what it means."""
        errors = exc.details.get("writeErrors") or []
        if exc.details.get("writeConcernErrors") or not errors:
            raise translate(exc, INDEXES) from exc
        error = errors[0]                       # ordered: the only one
        position = start + error["index"]
        if error.get("code") != DUPLICATE_KEY:
            # The store refused that event (too large, say): the ones before it are stored.
            raise counted("mongo", EventRefused(f"event {position} refused: {error.get('errmsg')}"[:300],
                                                position)) from exc
        # The event may be our own, stored by an earlier send of this very call whose
        # reply was lost (append re-sends once). So look for our _ids.
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

    async def last_seq(self, conversation_id: str, at_least: int = 0) -> int:
        # Only the seqs above ``at_least`` are asked for: SecantusDB reads the whole range of a
        # sorted, limited query, so without the bound a 10,000-event conversation cost 250 ms.
        with mongo_errors(INDEXES):
            doc = await self._events.find_one(
                {"conversation_id": conversation_id, "seq": {"$gt": at_least}}, {"seq": 1, "_id": 0},
                sort=[("seq", -1)])
        return int(doc["seq"]) if doc else at_least

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
            cursor = self._events.find(query, _AS_READ).sort("seq", direction).limit(limit)
            return await cursor.to_list()

    async def find_client_msg(self, conversation_id: str, sender_id: str, client_msg_id: str) -> Event | None:
        with mongo_errors(INDEXES):
            return await self._events.find_one(
                {"conversation_id": conversation_id, "sender_id": sender_id, "client_msg_id": client_msg_id},
                _AS_READ,
            )

    async def get(self, conversation_id: str, seq: int) -> Event | None:
        with mongo_errors(INDEXES):
            return await self._events.find_one({"conversation_id": conversation_id, "seq": seq}, _AS_READ)

    async def count_messages_after(self, conversation_id: str, after_seq: int) -> int:
        # Two stages, as _search_pipeline: SecantusDB serves the first one from SEQ (the events
        # after the cursor, what there is to count), where it served the one filter with ``kind``
        # beside the range by reading every event of the conversation. mongod merges the stages.
        with mongo_errors(INDEXES):
            cursor = await self._events.aggregate([
                {"$match": {"conversation_id": conversation_id, "seq": {"$gt": after_seq}}},
                {"$match": {"kind": "message"}},
                {"$count": "n"},
            ])
            counted = await cursor.to_list()
        return counted[0]["n"] if counted else 0

    async def _event_id(self, conversation_id: str, seq: int) -> ObjectId | None:
        """The ``_id`` of event ``seq``, read by SEQ's whole key.

        The projections below find their event by it and then write it by ``_id`` and their
        conditions. In one filter, those conditions beside (conversation_id, seq) made SecantusDB
        serve the write from the conversation_id prefix alone, reading every event of the
        conversation (a reaction in a long chat read all of it); mongod needs no such help.
        An event's ``_id`` never changes, so the two steps write the same event as one would."""
        with mongo_errors(INDEXES):
            doc = await self._events.find_one({"conversation_id": conversation_id, "seq": seq}, {"_id": 1})
        return doc["_id"] if doc else None

    # Projections: each is idempotent, so replaying an event after a crash changes nothing twice,
    # and a write whose reply was lost is simply sent again (``resending``).
    async def edit_message(self, conversation_id: str, seq: int, body: str, edited_at,
                           terms: Sequence[str] | None = None) -> None:
        # The terms are replaced with the body, in the same update: an edit never leaves the
        # message findable by words it no longer has.
        update: dict[str, Any] = {"$set": {"body": body, "edited_at": edited_at}}
        if terms:
            update["$set"]["terms"] = list(terms)
        else:
            update["$unset"] = {"terms": ""}
        event_id = await self._event_id(conversation_id, seq)
        if event_id is None:
            return
        # "Not edited later than this edit": no edit yet, or an older one. One predicate, never an
        # $or (SecantusDB scans the whole collection for an $or beside other fields); "not > t"
        # also matches a message without edited_at.
        await resending(lambda: self._events.update_one(
            {"_id": event_id, "kind": "message", "deleted": {"$ne": True},
             "edited_at": {"$not": {"$gt": edited_at}}},
            update), self._timeout_s, INDEXES)

    async def erase_message(self, conversation_id: str, seq: int) -> None:
        event_id = await self._event_id(conversation_id, seq)
        if event_id is not None:
            await resending(lambda: self._events.update_one(
                {"_id": event_id, "kind": "message"},
                {"$set": {"deleted": True},
                 "$unset": {"body": "", "attachments": "", "reactions": "", "terms": ""}}), self._timeout_s, INDEXES)
        # The edits carried the text too: a deleted message leaves no copy of its body.
        await resending(lambda: self._events.update_many(
            {"conversation_id": conversation_id, "kind": "edit", "target_seq": seq},
            {"$unset": {"body": ""}}), self._timeout_s, INDEXES)

    async def attached_elsewhere(self, conversation_id: str, media_id: str, except_seq: int) -> bool:
        with mongo_errors(INDEXES):
            return await self._events.find_one(
                {"attachments": media_id, "conversation_id": conversation_id, "seq": {"$ne": except_seq}},
                {"_id": 1}) is not None

    async def set_reaction(self, conversation_id: str, seq: int, user_id: str, emoji: str, on: bool) -> None:
        entry = {"emoji": emoji, "user_id": user_id}
        op = {"$addToSet": {"reactions": entry}} if on else {"$pull": {"reactions": entry}}
        event_id = await self._event_id(conversation_id, seq)
        if event_id is None:
            return
        await resending(lambda: self._events.update_one(
            {"_id": event_id, "kind": "message", "deleted": {"$ne": True}}, op),
            self._timeout_s, INDEXES)

    async def messages_before(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Event]:
        if before_seq is None or limit <= 0:
            query: dict[str, Any] = {"conversation_id": conversation_id, "kind": "message"}
            return await self._page(query, -1, limit)
        # Windows of seq below before_seq, newest first, each twice as wide as the last, until the
        # page is full or seq 1 is passed: each reads its own range only (see _WINDOW_PAGES).
        # Kinds are filtered here, not in the query: beside the seq range SecantusDB would serve
        # ``kind`` by reading every event of the conversation.
        out: list[Event] = []
        high, width = before_seq, max(limit, 1) * _WINDOW_PAGES
        while high > 1 and len(out) < limit:
            low = max(1, high - width)
            with mongo_errors(INDEXES):
                docs = await (self._events.find({"conversation_id": conversation_id, "seq": {"$gte": low, "$lt": high}},
                                                _AS_READ).sort("seq", -1).to_list())
            out += [d for d in docs if d["kind"] == "message"][:limit - len(out)]
            high, width = low, width * 2
        return out

    async def last_membership_change(self, conversation_id: str, user_id: str, upto_seq: int) -> Event | None:
        # Two stages: SecantusDB serves the first from MEMBERSHIP (this user's changes in this
        # conversation), where one filter with ``kind`` beside it read the conversation's every
        # event up to upto_seq, for each conversation a socket resumed. mongod merges the stages.
        with mongo_errors(INDEXES):
            cursor = await self._events.aggregate([
                {"$match": {"user_ids": user_id, "conversation_id": conversation_id, "seq": {"$lte": upto_seq}}},
                {"$match": {"kind": {"$in": ["member_added", "member_removed"]}}},
                {"$sort": {"seq": -1}},
                {"$limit": 1},
                {"$project": _AS_READ},
            ])
            found = await cursor.to_list()
        return found[0] if found else None

    async def search(self, conversation_ids: Sequence[str], terms: Sequence[str], before: str | None,
                     limit: int) -> tuple[list[Event], str | None]:
        after = _decode_cursor(before) if before is not None else None
        ids, wanted = list(dict.fromkeys(conversation_ids)), list(dict.fromkeys(terms))
        if not ids or not wanted or limit <= 0:
            return [], None
        with mongo_errors(INDEXES):
            cursor = await self._events.aggregate(_search_pipeline(ids, wanted, after, limit + 1))
            docs = await cursor.to_list()
        page = docs[:limit]
        next_cursor = _encode_cursor(page[-1]["created_at"], page[-1]["_id"]) if len(docs) > limit else None
        for doc in page:
            del doc["_id"]
        return page, next_cursor


def _search_pipeline(ids: list[str], terms: list[str], after: tuple[datetime, ObjectId] | None,
                     limit: int) -> list[dict[str, Any]]:
    """The search as an aggregation whose first stage is exactly one term's equality and the
    conversations' $in.

    That shape is for SecantusDB: it lifts a leading $match into its index planner, which serves
    "equality fields, then one $in" from a compound index (SEARCH) but $all, $or or any further
    field only by scanning every candidate of one clause. So the first stage fetches exactly the
    messages of these conversations that have the pivot term, and the second filters those.
    SecantusDB fetches every such candidate before it sorts and cuts the page, so a page costs as
    much as the pivot term is common in these conversations (bench/README.md, "Search").
    A real mongod does better with the same query: it merges the two stages, walks one
    (term, conversation) range of SEARCH per conversation, already in the sort's order, merges
    them and stops at the limit (up to 200 conversations; past that it sorts the matches).
    """
    # The longest term is likely the rarest (frequent words are short), so the fewest candidates.
    pivot = max(terms, key=len)
    rest: dict[str, Any] = {"terms": {"$all": terms}, "kind": "message", "deleted": {"$ne": True}}
    if after is not None:
        at, oid = after
        rest["$or"] = [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": oid}}]
    return [
        {"$match": {"terms": pivot, "conversation_id": {"$in": ids}}},
        {"$match": rest},
        {"$sort": {"created_at": -1, "_id": -1}},
        {"$limit": limit},
        {"$project": {"terms": 0}},
    ]


# A search cursor is the last message's (created_at, _id): milliseconds since the epoch and the
# ObjectId's 12 bytes, base64url. Opaque to clients; a forged one only moves where a page starts.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CURSOR = struct.Struct(">q12s")
_CURSOR_CHARS = 27           # base64 of 20 bytes, without padding


def _encode_cursor(at: datetime, oid: ObjectId) -> str:
    ms = (at - _EPOCH) // timedelta(milliseconds=1)
    return base64.urlsafe_b64encode(_CURSOR.pack(ms, oid.binary)).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    if not isinstance(cursor, str) or len(cursor) != _CURSOR_CHARS:
        raise ValueError("not a search cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=")
        ms, oid = _CURSOR.unpack(raw)
        at = _EPOCH + timedelta(milliseconds=ms)
    except (ValueError, struct.error, OverflowError) as exc:   # binascii.Error is a ValueError
        raise ValueError("not a search cursor") from exc
    if _encode_cursor(at, ObjectId(oid)) != cursor:          # one spelling per cursor
        raise ValueError("not a search cursor")
    return at, ObjectId(oid)


def _first_unencodable(docs: list[dict[str, Any]]) -> int:
    """The index of the first of ``docs`` BSON cannot encode (len(docs) if none: the failure was
    not one document's)."""
    for i, doc in enumerate(docs):
        try:
            bson.encode(doc)
        except (UnicodeEncodeError, BSONError):
            return i
    return len(docs)
