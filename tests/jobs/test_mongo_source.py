"""jobs.mongo_source on the real SecantusDB: the ``_id`` ranges read every document exactly once.

The read tasks are plain callables, run here in-process: what is under test is the splitting and
the query each task runs, not Ray's scheduling of them (the job tests cover that).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from bson import ObjectId
from pymongo import MongoClient

from jobs.mongo_source import MongoDatasource, MongoTarget, id_ranges

ROW = pa.schema([("id", pa.string()), ("n", pa.int64())])


def row(doc):
    return ({"id": str(doc["_id"]), "n": doc.get("n", 0)},)


@pytest.fixture
def target(mongo_server):
    return MongoTarget(mongo_server.uri, f"src_{uuid.uuid4().hex[:10]}")


def read_all(source: MongoDatasource, parallelism: int) -> tuple[int, list[str]]:
    tasks = source.get_read_tasks(parallelism)
    ids = [i for task in tasks for block in task() for i in block.column("id").to_pylist()]
    return len(tasks), ids


@pytest.mark.parametrize("make_id", [lambda i: ObjectId(), lambda i: f"c_{i:05x}", lambda i: i * 3,
                                     lambda i: datetime(2027, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i)])
def test_every_document_once_across_ranges(target, make_id):
    with target.database() as db:
        db["c"].insert_many([{"_id": make_id(i), "n": i} for i in range(1000)])
    count, ids = read_all(MongoDatasource(target, "c", row, ROW, rows_per_task=100, batch=64), parallelism=8)
    assert count == 8
    assert len(ids) == 1000 and set(Counter(ids).values()) == {1}


def test_the_query_applies_within_each_range(target):
    with target.database() as db:
        db["c"].insert_many([{"_id": ObjectId(), "n": i} for i in range(300)])
    source = MongoDatasource(target, "c", row, ROW, query={"n": {"$mod": [3, 0]}}, rows_per_task=50)
    _, ids = read_all(source, parallelism=4)
    with MongoClient(target.uri) as client:
        expected = {str(d["_id"]) for d in client[target.db]["c"].find({"n": {"$mod": [3, 0]}})}
    assert sorted(ids) == sorted(expected) and len(ids) == 100


def test_mixed_id_types_are_read_whole_by_one_task(target):
    # A range on one BSON type never matches another (type bracketing): one task, every document.
    with target.database() as db:
        db["c"].insert_many([{"_id": i} for i in range(50)] + [{"_id": f"s{i}"} for i in range(50)]
                            + [{"_id": ObjectId()} for _ in range(50)])
        assert id_ranges(db["c"], 4) == [{}]
    count, ids = read_all(MongoDatasource(target, "c", row, ROW, rows_per_task=10), parallelism=4)
    assert count == 1 and len(ids) == 150


def test_a_small_collection_is_one_task_and_an_empty_one_yields_nothing(target):
    with target.database() as db:
        db["small"].insert_many([{"n": i} for i in range(10)])
    assert read_all(MongoDatasource(target, "small", row, ROW), parallelism=200)[0] == 1
    count, ids = read_all(MongoDatasource(target, "missing", row, ROW), parallelism=200)
    assert ids == []
