"""Daily analytics of one UTC day, as Parquet: messages per conversation, active users, DAU.

    python -m jobs.analytics --date 2026-11-28 --out s3://analytics/raychat

One table per directory, partitioned Hive-style by day, so Spark, Athena, DuckDB or pyarrow read
each table whole with ``date`` as a column taken from the path:

    <out>/messages_per_conversation/date=YYYY-MM-DD/   conversation_id, messages
    <out>/active_users/date=YYYY-MM-DD/                user_id, events, messages
    <out>/daily_active_users/date=YYYY-MM-DD/          dau, messages, conversations

``messages`` counts ``kind == "message"`` events created that day (a message deleted since still
counts: it was sent). A user is active on a day if they caused any event that day: sent, edited,
deleted or reacted to a message, changed members or the title. (Reading sends no event, so a
reader who never writes is not counted.) ``dau`` is the number of active users; ``conversations``
the number of conversations with at least one message that day.

Re-running a day replaces that day's three directories and leaves other days alone.

Cost: events have no index on ``created_at``, so the read scans the events collection once, in
parallel ``_id`` ranges over the cluster. On a database that grows large, an index on
``created_at`` would let each range read only its day.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from jobs import cli
from jobs.files import Location, destination, location
from jobs.mongo_source import MongoDatasource, MongoTarget, read_mongo
from raychat.clock import Clock, SystemClock

TABLES = ("messages_per_conversation", "active_users", "daily_active_users")
EVENT_ROW = pa.schema([("conversation_id", pa.string()), ("user_id", pa.string()), ("message", pa.int64())])
DAILY = pa.schema([("dau", pa.int64()), ("messages", pa.int64()), ("conversations", pa.int64())])


def event_row(doc: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    sender = doc.get("sender_id")
    return ({"conversation_id": doc["conversation_id"], "user_id": sender if isinstance(sender, str) else None,
             "message": int(doc.get("kind") == "message")},)


def day_bounds(d: date) -> tuple[datetime, datetime]:
    start = datetime.combine(d, time(0), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def partition(out: Location, table: str, d: date) -> Location:
    return out.join(table, f"date={d.isoformat()}")


def run(target: MongoTarget, out: Location, d: date) -> dict[str, Any]:
    from ray.data.aggregate import Count, Sum
    from ray.data.context import ShuffleStrategy
    from ray.data.expressions import col

    start, end = day_bounds(d)
    source = MongoDatasource(target, "events", event_row, EVENT_ROW,
                             query={"created_at": {"$gte": start, "$lt": end}},
                             projection={"_id": 0, "conversation_id": 1, "sender_id": 1, "kind": 1})
    events = read_mongo(source)
    # A day's counts are small. The sort-based shuffle runs as plain tasks; Ray's default (hash)
    # shuffle starts aggregator actors first, seconds of fixed cost per groupby that would dominate
    # a job this size. Set on this dataset's own context: nothing else in the process changes.
    events.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    events = events.materialize()
    # One shuffle partition per CPU, not Ray's default of 200 mostly empty ones.
    shards = min(64, cli.cluster_cpus())

    per_conversation = active = None
    if events.count():
        per_conversation = (events.groupby("conversation_id", num_partitions=shards)
                            .aggregate(Sum("message", alias_name="messages"))
                            .filter(expr=col("messages") > 0)
                            .materialize())
        active = (events.filter(expr=col("user_id").is_not_null())
                  .groupby("user_id", num_partitions=shards)
                  .aggregate(Count(alias_name="events"), Sum("message", alias_name="messages"))
                  .materialize())
    conversations = per_conversation.count() if per_conversation is not None else 0
    dau = active.count() if active is not None else 0
    messages = int(per_conversation.sum("messages") or 0) if conversations else 0
    # Cleared only now that the day's numbers exist: a run that fails leaves the last good output.
    for table in TABLES:
        partition(out, table, d).clear()
    for table, ds in (("messages_per_conversation", per_conversation), ("active_users", active)):
        if ds is not None and ds.count():
            where = partition(out, table, d)
            ds.write_parquet(where.path, filesystem=where.fs, min_rows_per_file=1_000_000)
    daily = partition(out, "daily_active_users", d)
    daily.fs.create_dir(daily.path, recursive=True)
    pq.write_table(pa.Table.from_pylist([{"dau": dau, "messages": messages, "conversations": conversations}],
                                        schema=DAILY),
                   f"{daily.path}/part-0.parquet", filesystem=daily.fs)
    return {"job": "analytics", "date": d.isoformat(), "out": out.url, "dau": dau, "messages": messages,
            "conversations": conversations}


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()
    p = cli.parser("analytics", "Messages per conversation, active users and DAU of one UTC day, as Parquet.")
    p.add_argument("--date", type=cli.day, default=None,
                   help="the UTC day, YYYY-MM-DD; default: yesterday (UTC)")
    p.add_argument("--out", type=destination, required=True, help="s3://bucket/prefix or a local directory")
    args = p.parse_args(argv)
    d = args.date or (datetime.fromtimestamp(clock.now(), tz=timezone.utc).date() - timedelta(days=1))
    settings = cli.settings()

    def body() -> dict[str, Any]:
        cli.start_ray(args.address)
        return run(MongoTarget.from_settings(settings), location(args.out, settings), d)

    return cli.run("analytics", body)


if __name__ == "__main__":
    sys.exit(main())
