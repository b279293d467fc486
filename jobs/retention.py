"""Retention: delete events older than each conversation's policy, and the media only they attach.

    python -m jobs.retention [--default-days N] [--dry-run]

The rules (which events and media expire, and why the newest event, unreplayed events and
membership events stay) are in jobs/retention_rules.py. Set a conversation's policy in its
document: ``db.conversations.updateOne({_id: "c_…"}, {$set: {retention_days: 30}})``.

Three stages, each spread over the cluster by Ray Data:

1. plan: per conversation with a policy, its newest event, what expires, and the media ids the
   expiring messages attach;
2. media: each candidate that no surviving event attaches loses its object, then its record;
3. events: each plan's expiring events are deleted by seq range, its newest event emptied if
   it expired, and a ``last_message`` summary of an expired message is cleared.

Media go before events so that a run cut short is finished by the next one: the events that name
the media are still there to be found. (Events first, a crash in between would leave media that
nothing names any more.) One window stays open: an owner who attaches an old upload to a new
message between stage 2's check and its delete gets a message whose media is gone (404). The
media record's ``conversations`` (who may fetch it) is left as it is for media that stay.

``--dry-run`` runs stages 1 and 2 read-only and reports what would go. The report (stdout, JSON)
counts conversations planned, events deleted, newest events emptied, media deleted, and
conversations skipped for a broken ``retention_days``.

Counts: ``message_count`` on a conversation keeps counting every message ever sent, and a read
cursor's count is ``message_count`` minus the messages after its seq (actors/conversation.py
``_read``), which retention never removes: unread counts stay right after a run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from datetime import datetime, timezone
from functools import partial
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from actors.events import utc
from jobs import cli
from jobs.mongo_source import MongoDatasource, MongoTarget, read_mongo
from jobs.retention_rules import BadPolicy, Plan, emptied, plan, retention_days, unreferenced
from raychat.clock import Clock, SystemClock
from raychat.config import Settings

DELETE_CHUNK = 10_000       # seqs per delete_many: each write stays short, and a rerun resumes
MEDIA_CHUNK = 500           # media ids per reference query (and per task)
POLICY_ROW = pa.schema([("conversation_id", pa.string()), ("days", pa.int64()), ("state_seq", pa.int64()),
                        ("bad", pa.bool_())])
PLAN_FIELDS = [f.name for f in dataclasses.fields(Plan)]


def policy_rows(conv: Mapping[str, Any], default_days: int | None) -> Iterable[dict[str, Any]]:
    try:
        days = retention_days(conv, default_days)
    except BadPolicy:
        return ({"conversation_id": conv["_id"], "days": None, "state_seq": 0, "bad": True},)
    if days is None:
        return ()
    return ({"conversation_id": conv["_id"], "days": days, "state_seq": int(conv.get("state_seq") or 0),
             "bad": False},)


# ---- stage 1: plan ------------------------------------------------------------------------------
def plan_batch(batch: pa.Table, *, target: MongoTarget, now: datetime) -> dict[str, list]:
    """One row per conversation with something to do (its plan, how many events go, which media
    ids the expiring messages attach), and one per broken policy (``bad``), to be counted."""
    out: dict[str, list] = {name: [] for name in (*PLAN_FIELDS, "events", "media", "bad")}
    with target.database() as db:
        events = db["events"]
        for row in batch.to_pylist():
            cid = row["conversation_id"]
            if row["bad"]:              # passed through, to be counted: never planned
                for name, value in {**_NO_PLAN, "conversation_id": cid, "bad": True}.items():
                    out[name].append(value)
                continue
            newest = events.find_one({"conversation_id": cid}, {"_id": 0, "seq": 1, "kind": 1, "created_at": 1},
                                     sort=[("seq", -1)])
            p = plan(cid, row["days"], now, row["state_seq"], newest)
            if p is None:
                continue
            expiring = [p.delete_filter()] if p.upto_seq > 0 else []
            if p.empty_newest:
                expiring.append(p.newest_filter())
            count = events.count_documents(expiring[0]) if p.upto_seq > 0 else 0
            if not count and not p.empty_newest:
                continue
            media: set[str] = set()
            for query in expiring:
                for ev in events.find({**query, "kind": "message", "attachments": {"$exists": True, "$ne": []}},
                                      {"_id": 0, "attachments": 1}):
                    media.update(m for m in ev.get("attachments") or () if isinstance(m, str))
            for name, value in {**plan_row(p), "events": count, "media": sorted(media), "bad": False}.items():
                out[name].append(value)
    return out


_NO_PLAN = {"cutoff": 0, "upto_seq": 0, "newest_seq": 0, "newest_kind": "", "empty_newest": False, "events": 0,
            "media": []}


# Plans cross stages as rows of plain columns; the cutoff as epoch milliseconds, because a
# datetime column may come back from a block without its time zone.
def plan_row(p: Plan) -> dict[str, Any]:
    return {**{name: getattr(p, name) for name in PLAN_FIELDS}, "cutoff": int(p.cutoff.timestamp() * 1000)}


def as_plan(row: Mapping[str, Any]) -> Plan:
    fields = {name: row[name] for name in PLAN_FIELDS}
    return Plan(**{**fields, "cutoff": datetime.fromtimestamp(int(row["cutoff"]) / 1000, tz=timezone.utc)})


# ---- stage 2: media -----------------------------------------------------------------------------
def media_batch(batch: pa.Table, *, target: MongoTarget, settings: dict[str, Any],
                plans: dict[str, Plan], dry_run: bool) -> dict[str, list]:
    from gateway.media_service import blob_store_for     # the gateway's own choice: S3, or disk

    ids = [m for row in batch.to_pylist() for m in row["ids"]]
    with target.database() as db:
        refs = db["events"].find({"attachments": {"$in": ids}},
                                 {"_id": 0, "conversation_id": 1, "seq": 1, "kind": 1, "created_at": 1,
                                  "attachments": 1})
        gone = sorted(unreferenced(ids, refs, plans))
        records = list(db["media"].find({"_id": {"$in": gone}}, {"_id": 1, "key": 1}))
        if not dry_run and records:
            blobs, _ = blob_store_for(Settings.from_dict(settings), SystemClock())

            async def delete_objects() -> None:
                try:
                    for record in records:
                        await blobs.delete(record["key"])
                finally:
                    await blobs.close()

            asyncio.run(delete_objects())
            # The record last: a run cut short leaves a record naming no object, never an object
            # no record names.
            db["media"].delete_many({"_id": {"$in": [r["_id"] for r in records]}})
    return {"media": [len(records)]}


# ---- stage 3: events ----------------------------------------------------------------------------
def events_batch(batch: pa.Table, *, target: MongoTarget) -> dict[str, list]:
    deleted = emptied_count = 0
    with target.database() as db:
        events, conversations, progress = db["events"], db["conversations"], db["conversation_progress"]
        for p in map(as_plan, batch.to_pylist()):
            lo = 0
            while lo < p.upto_seq:
                hi = min(lo + DELETE_CHUNK, p.upto_seq)
                deleted += events.delete_many(p.delete_filter(lo, hi)).deleted_count
                lo = hi
            if p.empty_newest:
                emptied_count += events.update_one(p.newest_filter(), emptied(p)).modified_count
            # The conversation list shows the last message's first 200 characters: an expired one
            # goes too. Conditional, so a newer summary written meanwhile stays.
            # Both documents hold a summary (storage/mongo_conversations.py says why).
            for summaries in (conversations, progress):
                summaries.update_one(
                    {"_id": p.conversation_id, "last_message.created_at": {"$lt": p.cutoff},
                     "last_message.seq": {"$lte": p.newest_seq if p.empty_newest else p.upto_seq}},
                    {"$set": {"last_message": None}})
    return {"deleted": [deleted], "emptied": [emptied_count]}


def run(target: MongoTarget, settings: Settings, now: datetime, default_days: int | None,
        dry_run: bool) -> dict[str, Any]:
    import ray

    rows = (read_mongo(MongoDatasource(target, "conversations", partial(policy_rows, default_days=default_days),
                                       POLICY_ROW, projection={"_id": 1, "retention_days": 1, "state_seq": 1}))
            .map_batches(plan_batch, fn_kwargs={"target": target, "now": now}, batch_format="pyarrow")
            .take_all())
    bad = sum(1 for row in rows if row["bad"])
    planned = [row for row in rows if not row["bad"]]
    plans = {row["conversation_id"]: as_plan(row) for row in planned}
    report: dict[str, Any] = {"job": "retention", "dry_run": dry_run, "now": now.isoformat(),
                              "default_days": default_days, "bad_policies": bad, "conversations": len(plans),
                              "events": sum(int(row["events"]) for row in planned),
                              "emptied": sum(p.empty_newest for p in plans.values()), "media": 0}
    candidates = sorted({m for row in planned for m in row["media"]})
    if candidates:
        chunks = [{"ids": candidates[i:i + MEDIA_CHUNK]} for i in range(0, len(candidates), MEDIA_CHUNK)]
        checked = ray.data.from_items(chunks, override_num_blocks=min(len(chunks), cli.cluster_cpus())).map_batches(
            media_batch, batch_size=1, batch_format="pyarrow",
            fn_kwargs={"target": target, "settings": settings.to_dict(), "plans": plans, "dry_run": dry_run})
        report["media"] = sum(int(row["media"]) for row in checked.take_all())
    if dry_run or not plans:
        return report
    done = (ray.data.from_items([plan_row(p) for p in plans.values()],
                                override_num_blocks=min(len(plans), cli.cluster_cpus()))
            .map_batches(events_batch, fn_kwargs={"target": target}, batch_format="pyarrow")
            .take_all())
    # Sums of a few rows, on the driver: Dataset.sum would start a shuffle for them.
    report["events"] = sum(int(row["deleted"]) for row in done)
    report["emptied"] = sum(int(row["emptied"]) for row in done)
    return report


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()
    p = cli.parser("retention", "Delete events older than each conversation's retention_days, and their media.")
    p.add_argument("--default-days", type=int, default=None, metavar="N",
                   help="retention for conversations whose document sets none; default: keep those forever")
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    args = p.parse_args(argv)
    if args.default_days is not None and args.default_days < 1:
        p.error("--default-days: must be a whole number of days >= 1")
    settings = cli.settings()
    now = utc(clock.now())

    def body() -> dict[str, Any]:
        cli.start_ray(args.address)
        return run(MongoTarget.from_settings(settings), settings, now, args.default_days, args.dry_run)

    return cli.run("retention", body)


if __name__ == "__main__":
    sys.exit(main())
