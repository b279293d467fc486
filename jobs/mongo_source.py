"""MongoDB into Ray Data: one collection read by parallel tasks, each over its own ``_id`` range.

pymongo only (pymongoarrow is not a dependency): each read task opens its own client, runs the
query restricted to its range, and turns documents into rows with the job's ``to_rows``, ``batch``
rows per Arrow block, under the job's fixed schema (so every block agrees, whatever it holds).

The ranges come from the ``_id`` index: boundaries at every n/k-th ``_id`` in sort order. A range
query only matches values of its own BSON type (MongoDB's type bracketing), so a collection
whose smallest and largest ``_id`` differ in type is read by one task, whole. Ranges have an open
first and last end, so documents inserted during the read with a smaller or larger ``_id`` are
still in some range; a read is not a snapshot of a live database (neither is mongodump's without
--oplog).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

import pyarrow as pa
from bson import Decimal128, Int64, ObjectId
from pymongo import MongoClient, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from raychat.config import Settings

if TYPE_CHECKING:
    import ray.data

ToRows = Callable[[Mapping[str, Any]], Iterable[dict[str, Any]]]


@dataclass(frozen=True)
class MongoTarget:
    """The jobs' database as plain values: built on the driver, used inside every task."""

    uri: str
    db: str
    write_concern: str = "majority"
    journal: bool = True
    timeout_ms: int = 3000

    @classmethod
    def from_settings(cls, settings: Settings, db: str | None = None) -> "MongoTarget":
        assert settings.mongodb_uri is not None
        return cls(settings.mongodb_uri, db or settings.mongodb_db, settings.write_concern,
                   settings.write_journal, settings.store_timeout_ms)

    @contextmanager
    def database(self) -> Iterator[Database]:
        # Finding and reaching the server is bounded by the store timeout; a query is not: a job's
        # scan of a large collection may rightly take long.
        client: MongoClient = MongoClient(self.uri, tz_aware=True, tzinfo=timezone.utc,
                                          serverSelectionTimeoutMS=self.timeout_ms,
                                          connectTimeoutMS=self.timeout_ms)
        w: int | str = int(self.write_concern) if self.write_concern.isdigit() else self.write_concern
        try:
            yield client.get_database(self.db, write_concern=WriteConcern(w=w, j=self.journal))
        finally:
            client.close()


def id_ranges(collection: Collection, parts: int) -> list[dict[str, Any]]:
    """Up to ``parts`` filters on ``_id`` that together match every document exactly once."""
    lo = collection.find_one({}, {"_id": 1}, sort=[("_id", 1)])
    hi = collection.find_one({}, {"_id": 1}, sort=[("_id", -1)])
    if parts <= 1 or lo is None or hi is None or _type_class(lo["_id"]) != _type_class(hi["_id"]) \
            or _type_class(lo["_id"]) not in _SPLITTABLE:
        return [{}]
    n = collection.estimated_document_count()
    bounds: list[Any] = []
    for i in range(1, parts):
        doc = next(iter(collection.find({}, {"_id": 1}).sort("_id", 1).skip(i * n // parts).limit(1)), None)
        if doc is not None and (not bounds or doc["_id"] > bounds[-1]) and doc["_id"] > lo["_id"]:
            bounds.append(doc["_id"])
    if not bounds:
        return [{}]
    ranges: list[dict[str, Any]] = [{"_id": {"$lt": bounds[0]}}]
    ranges += [{"_id": {"$gte": a, "$lt": b}} for a, b in zip(bounds, bounds[1:])]
    ranges.append({"_id": {"$gte": bounds[-1]}})
    return ranges


def _type_class(value: Any) -> Any:
    """BSON's comparison class of ``value``; within ``_SPLITTABLE`` classes Python orders values as
    MongoDB does (strings: code point order is UTF-8 byte order)."""
    # Numbers of every BSON width compare with each other; other types only with their own.
    if isinstance(value, (int, float, Int64, Decimal128, Decimal)) and not isinstance(value, bool):
        return "number"
    if isinstance(value, datetime):
        return datetime
    return type(value)


_SPLITTABLE = ("number", str, ObjectId, datetime)


class MongoDatasource(Datasource):
    """``collection`` documents matching ``query``, as rows ``to_rows`` makes, in ``schema``."""

    def __init__(self, target: MongoTarget, collection: str, to_rows: ToRows, schema: pa.Schema, *,
                 query: Mapping[str, Any] | None = None, projection: Mapping[str, Any] | None = None,
                 rows_per_task: int = 50_000, batch: int = 5_000):
        super().__init__()
        self._target, self._collection, self._to_rows, self._schema = target, collection, to_rows, schema
        self._query = dict(query or {})
        self._projection = dict(projection) if projection is not None else None
        self._rows_per_task = rows_per_task
        self._batch = batch

    def get_name(self) -> str:
        return f"Mongo({self._collection})"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def tasks_wanted(self) -> int:
        """One read task per ``rows_per_task`` documents of the collection (at least one)."""
        with self._target.database() as db:
            return max(1, math.ceil(db[self._collection].estimated_document_count() / self._rows_per_task))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        with self._target.database() as db:
            collection = db[self._collection]
            parts = min(max(parallelism, 1), math.ceil(collection.estimated_document_count() / self._rows_per_task))
            ranges = id_ranges(collection, parts)
        return [
            ReadTask(partial(_read, self._target, self._collection, _and(self._query, r), self._projection,
                             self._to_rows, self._schema, self._batch),
                     BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None),
                     schema=self._schema, per_task_row_limit=per_task_row_limit)
            for r in ranges
        ]


def _and(query: dict[str, Any], id_range: dict[str, Any]) -> dict[str, Any]:
    if not id_range:
        return query
    return {"$and": [query, id_range]} if query else id_range


def _read(target: MongoTarget, collection: str, query: dict[str, Any], projection: dict[str, Any] | None,
          to_rows: ToRows, schema: pa.Schema, batch: int) -> Iterator[pa.Table]:
    rows: list[dict[str, Any]] = []
    with target.database() as db:
        for doc in db[collection].find(query, projection, batch_size=batch):
            rows.extend(to_rows(doc))
            if len(rows) >= batch:
                yield pa.Table.from_pylist(rows, schema=schema)
                rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=schema)


def read_mongo(source: MongoDatasource) -> ray.data.Dataset:
    """The source as a dataset of as many blocks as it has read tasks. Left to itself, Ray asks
    for at least 200 blocks of a source of unknown size and splits a small read that finely."""
    import ray

    return ray.data.read_datasource(source, override_num_blocks=source.tasks_wanted())
