"""ConversationStore on MongoDB: ``conversation_id`` is stored as ``_id``.

A direct conversation also stores its ``direct_key`` (unique where it is a string);
that index, not a read-then-write, decides which of racing creators wins.

Two documents per conversation:

    conversations           the roster, title, kind…, and a checkpoint (state_seq, last_seq,
                            message_count, last_message, last_activity_at, reads) written only
                            by ``full`` saves: its last_activity_at is the list position
    conversation_progress   a checkpoint and read cursors (``reads``), written by every other
                            save and every cursor move

Why: a conversation document is indexed by member (``members_activity``, one entry per
member), and SecantusDB rewrites all of a document's index entries on every update: ~1.7 ms
of store CPU for 10 members, ~70 ms for 1,000. The progress document has no index but its
``_id``, so the write every message causes costs a fraction of that, and the list position is
written at most about once a second (``actors/conversation.py``). A save writes one of the two,
never both. Reads merge them: the newer checkpoint wins, cursors are the higher of both, and
``last_activity_at`` stays the list position.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import DuplicateKey, StoreRejected
from storage.mongo_common import Index, as_stored, ensure, mongo_errors, rename, resending
from storage.ports import Conversation

_ID = Index("_id_", (("_id", 1),), key="conversation_id", unique=True, builtin=True)
DIRECT_KEY = Index(
    "direct_key", (("direct_key", 1),), key="direct_key", unique=True,
    partial={"direct_key": {"$type": "string"}},
)
# Serves list_for_user's filter, sort and cursor from the index; _id breaks ties so
# the order is total.
BY_MEMBER = Index("members_activity", (("members", 1), ("last_activity_at", -1), ("_id", -1)))
# Serves direct_peers, which every presence change runs. Through members_activity that query
# read every conversation of the user, a 1,000-member group included (~1 ms of store CPU each,
# twice the query's floor): after 1,000 sockets closed at once their offline queries held the
# store for seconds and message writes waited behind them. Only direct conversations are in
# this index, so a group's writes do not touch it; mongod picks it for the same query too.
# ``direct_key`` after ``members``: create() finds the conversation of a taken direct key through
# it. DIRECT_KEY cannot serve that read on SecantusDB (it never takes a string equality as
# implying a ``$type`` partial filter, and scans the collection); through a member of the pair,
# this index can, exactly.
DIRECT_MEMBERS = Index("direct_members", (("members", 1), ("direct_key", 1)), partial={"kind": "direct"})
INDEXES = (_ID, DIRECT_KEY, BY_MEMBER, DIRECT_MEMBERS)
PROGRESS_INDEXES = (_ID,)
# What the progress document holds besides ``reads``; ``last_activity_at`` there is the newest
# activity, for the next full save, never the list position.
CHECKPOINT = ("state_seq", "last_seq", "message_count", "last_message")
# A user's list is read as windows of last_activity_at going back from the cursor (the first
# page: from now), each a range of BY_MEMBER, not as one query: SecantusDB reads a query's whole
# index range before it sorts and limits (mongod stops at the limit), so one query read every
# conversation of the user, 1,000-member groups included, for each page of 50 (5,000
# conversations: 250 ms, the store held meanwhile). The first window spans _FIRST_WINDOW, and is
# read whole: a user whose thousands of conversations were all active within it gains nothing.
_FIRST_WINDOW = timedelta(hours=1)
# Then each window reaches back as far as the conversations found so far say the rest of the page
# needs (and a quarter more), at least twice as far back as the windows before it and at most
# _MAX_GROWTH times; that far when the last window found none, so a quiet stretch costs few reads.
_MAX_GROWTH = 16
# The stop, since no cheap read tells how far back a user's conversations go (the oldest, asked
# for with a limit of 1, is read as all of them): a window that would reach back further than
# _HORIZON reads everything older instead. So a user with less than a page of conversations pays
# five queries of (almost) nothing (~0.4 ms of store time each) where one read all of them; a page
# costs all the older conversations only when less than a page of them was active in the year.
_HORIZON = timedelta(days=365)


class MongoConversationStore:
    def __init__(self, collection: AsyncCollection, hot: AsyncCollection | None = None,
                 timeout_s: float = 3.0, progress: AsyncCollection | None = None,
                 clock: Callable[[], float] = time.time):
        self._conversations = collection
        # Seconds since the epoch: where the first page's windows start (_FIRST_WINDOW). It moves
        # only what is read, never what is listed.
        self._clock = clock
        # Checkpoints and read cursors, the writes every message causes, go through a client
        # without retryable writes (MongoStores says why); each is idempotent and re-sent by
        # ``resending`` instead. ``hot`` is the conversations collection on that client.
        self._hot = hot if hot is not None else collection
        self._progress = progress if progress is not None else \
            self._hot.database[collection.name + "_progress"]
        self._timeout_s = timeout_s

    async def ensure_indexes(self) -> None:
        await ensure(self._conversations, INDEXES)

    async def create(self, conversation: Conversation, direct_key: str | None = None) -> tuple[Conversation, bool]:
        doc = _to_doc(conversation)
        if direct_key is not None:
            doc["direct_key"] = direct_key
        mine = as_stored(doc, self._conversations)
        try:
            with mongo_errors(INDEXES):
                await self._conversations.insert_one(doc)
            return _from_doc(mine), True
        except DuplicateKey as exc:
            refused = exc
        # "Created" means the stored conversation is the caller's own: an identical
        # document is ours, inserted by a re-sent write whose reply was lost
        # (SecantusDB does not dedupe retried writes; mongod does).
        with mongo_errors(INDEXES):
            if direct_key is not None:
                existing = await self._direct(direct_key, doc)
                if existing is not None:
                    return _from_doc(existing), existing == mine
            existing = await self._conversations.find_one({"_id": doc["_id"]})
        if existing == mine:
            return _from_doc(existing), True
        raise DuplicateKey("conversation_id") from refused

    async def _direct(self, direct_key: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The stored conversation of ``direct_key``, read through DIRECT_MEMBERS by a member of
        the pair (the caller's conversation has the same pair). Through DIRECT_KEY only if that
        finds nothing: a scan on SecantusDB, for a roster or kind that no longer matches its key."""
        members = doc.get("members") or []
        if members and doc.get("kind") == "direct":
            found = await self._conversations.find_one(
                {"members": members[0], "kind": "direct", "direct_key": direct_key})
            if found is not None:
                return found
        return await self._conversations.find_one({"direct_key": direct_key})

    async def get(self, conversation_id: str) -> Conversation | None:
        with mongo_errors(INDEXES):
            doc, progress = await asyncio.gather(self._conversations.find_one({"_id": conversation_id}),
                                                 self._progress.find_one({"_id": conversation_id}))
        return _from_doc(merged(doc, progress)) if doc else None

    async def list_for_user(self, user_id: str, before: datetime | None, limit: int,
                            before_id: str | None = None) -> list[Conversation]:
        if limit <= 0:                       # pymongo reads limit(0) as "no limit"
            return []
        docs = await self._newest(user_id, before, before_id, limit)
        with mongo_errors(INDEXES):
            progress = {p["_id"]: p for p in await self._progress.find(
                {"_id": {"$in": [d["_id"] for d in docs]}}).to_list()} if docs else {}
        return [_from_doc(merged(doc, progress.get(doc["_id"]))) for doc in docs]

    async def ids_for_member(self, user_id: str, limit: int) -> list[str]:
        if limit <= 0:                       # pymongo reads limit(0) as "no limit"
            return []
        return [doc["_id"] for doc in await self._newest(user_id, None, None, limit, {"_id": 1})]

    async def _newest(self, user_id: str, before: datetime | None, before_id: str | None, limit: int,
                      projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` conversation documents of ``user_id`` in list order (last_activity_at,
        then _id, both descending), after the cursor; read as windows (see _FIRST_WINDOW).

        The windows are adjacent ranges of last_activity_at, each "after its low, at or before the
        last one's low", so a conversation is in exactly one of them, and each is read in list
        order: their concatenation is that of one query over all of them. After, not "at or after":
        on BY_MEMBER, SecantusDB drops the entries equal to a $gte bound on last_activity_at (the
        bound that ends a range of a descending field followed by another one); $gt and $lte it
        serves exactly, mongod all four."""
        order = [("last_activity_at", -1), ("_id", -1)]
        start = before if before is not None else datetime.fromtimestamp(self._clock(), timezone.utc)
        # How far back a window may reach: _HORIZON, or less from a cursor near datetime.min.
        horizon = min(_HORIZON, start - datetime.min.replace(tzinfo=start.tzinfo))
        ties = before is not None and before_id is not None      # the cursor's own time is in the page
        high = None if before is None else {"$lte" if ties else "$lt": before}
        reach, out = _FIRST_WINDOW, []
        while True:
            last = reach >= horizon
            times: dict[str, Any] = {**({} if last else {"$gt": start - reach}), **(high or {})}
            query: dict[str, Any] = {"members": user_id, **({"last_activity_at": times} if times else {})}
            need = limit - len(out)
            with mongo_errors(INDEXES):
                if ties:
                    # The sort's own order (time, then id): ties at a page boundary are neither lost
                    # nor repeated. Two stages, not one filter with an $or beside members: SecantusDB
                    # scans the whole collection for that. It serves the first stage from BY_MEMBER
                    # (the member, then the window's times) and filters the rest; mongod merges them.
                    docs = await (await self._conversations.aggregate([
                        {"$match": query},
                        {"$match": {"$or": [{"last_activity_at": {"$lt": before}}, {"_id": {"$lt": before_id}}]}},
                        {"$sort": dict(order)},
                        {"$limit": need},
                        *([{"$project": projection}] if projection else []),
                    ])).to_list()
                else:
                    docs = await self._conversations.find(query, projection).sort(order).limit(need).to_list()
            out += docs
            if last or len(out) >= limit:
                return out
            # The next window ends where this one began: at its low, included there.
            high, ties = {"$lte": start - reach}, False
            growth = _MAX_GROWTH if not docs else 1.25 * limit / len(out)
            reach *= min(_MAX_GROWTH, max(2.0, growth))

    async def save_progress(self, conversation_id: str, progress: dict[str, Any],
                            reads: dict[str, tuple[int, int]] | None = None, *, full: bool = True) -> None:
        # Guarded by state_seq: a checkpoint only ever moves forward, so late or repeated
        # saves (they run after the acknowledgement, concurrently) cannot undo a newer one.
        # One predicate beside _id, never an $or (SecantusDB scans the collection for an $or
        # beside _id); "not >= n" also matches a document that has no state_seq yet.
        guard = {"_id": conversation_id, "state_seq": {"$not": {"$gte": progress["state_seq"]}}}
        at = progress.get("last_activity_at")
        maxes = _read_fields(reads or {})
        if at is not None:
            maxes["last_activity_at"] = at
        if full or any(k in progress for k in ("members", "roles", "title")):
            # The conversation document alone, cursors included: its checkpoint, list position,
            # and the roster and title when they changed (they are always saved in full). Reads
            # take the newer checkpoint and the higher cursors of the two documents, so the
            # progress document may stay behind. Writing both cost every message of a 1:1 chat
            # (each comes more than a listing gap after the last) ~1 ms more store CPU.
            fields = {k: v for k, v in progress.items()
                      if k != "last_activity_at" and (v is not None or k == "title")}
            update: dict[str, Any] = {"$set": fields}
            if maxes:
                update["$max"] = maxes
            result = await resending(lambda: self._hot.update_one(guard, update), self._timeout_s, INDEXES)
            if result.matched_count == 0 and reads:
                # A newer checkpoint is stored (or this write's reply was lost and it was sent
                # again): the cursors still move forward.
                await self.set_reads(conversation_id, reads)
            return
        fields = {k: progress[k] for k in CHECKPOINT if progress.get(k) is not None}
        update = {"$set": fields}
        if maxes:
            update["$max"] = maxes
        # Cursors ride in the checkpoint's update: one write per flush, not two. The upsert
        # makes the document at a conversation's first checkpoint; when a newer checkpoint is
        # stored the guard matches nothing and the upsert's insert meets its _id.
        try:
            await resending(lambda: self._progress.update_one(guard, update, upsert=True),
                            self._timeout_s, PROGRESS_INDEXES)
        except DuplicateKey:
            if reads:
                await self.set_reads(conversation_id, reads)

    async def direct_peers(self, user_id: str, limit: int = 10_000) -> list[str]:
        with mongo_errors(INDEXES):
            cursor = self._conversations.find({"members": user_id, "kind": "direct"}, {"members": 1}).limit(limit)
            return [m for doc in await cursor.to_list() for m in doc["members"] if m != user_id]

    async def set_reads(self, conversation_id: str, reads: dict[str, tuple[int, int]]) -> None:
        # Cursors live in the progress document, so a cursor move does not re-index the
        # conversation's members; all of a flush's cursors go in one update. $max: a cursor
        # only moves forward.
        fields = _read_fields(reads)
        if not fields:
            return
        await resending(lambda: self._progress.update_one({"_id": conversation_id}, {"$max": fields}, upsert=True),
                        self._timeout_s, PROGRESS_INDEXES)


def merged(doc: dict[str, Any] | None, progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """A conversation document with its progress document applied: the newer checkpoint wins,
    each cursor is the higher of the two, and ``last_activity_at`` stays the list position."""
    if doc is None or not progress:
        return doc
    out = dict(doc)
    if progress.get("state_seq", 0) >= doc.get("state_seq", 0):
        out.update((k, progress[k]) for k in CHECKPOINT if k in progress)
    if progress.get("reads"):
        reads = dict(doc.get("reads") or {})
        for user, cursor in progress["reads"].items():
            mine = reads.get(user)
            if not isinstance(mine, dict) or cursor.get("seq", 0) >= mine.get("seq", 0):
                reads[user] = cursor
        out["reads"] = reads
    return out


def _read_fields(reads: dict[str, tuple[int, int]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for user_id, (seq, count) in reads.items():
        if "." in user_id or user_id.startswith("$"):
            raise StoreRejected("a user id may not contain '.' or start with '$'")
        fields[f"reads.{user_id}.seq"] = seq
        fields[f"reads.{user_id}.count"] = count
    return fields


def _to_doc(conversation: Conversation) -> dict[str, Any]:
    if "conversation_id" not in conversation:
        raise StoreRejected("a conversation needs a conversation_id")
    doc = rename(conversation, "conversation_id", "_id")
    doc.pop("direct_key", None)              # only the create() argument sets it
    # list_for_user sorts and pages on last_activity_at, save_progress raises both:
    # a conversation without them would sort last and never show in a `before` page.
    doc.setdefault("last_seq", 0)
    if doc.get("last_activity_at") is None:
        doc["last_activity_at"] = doc.get("created_at")
    return doc


def _from_doc(doc: dict[str, Any]) -> Conversation:
    # direct_key is the adapter's uniqueness device, not part of the Conversation shape.
    out = rename(doc, "_id", "conversation_id")
    out.pop("direct_key", None)
    return out
