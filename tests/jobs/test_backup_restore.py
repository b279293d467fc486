"""jobs.backup then jobs.restore into an empty database: the same documents, events and indexes."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from pymongo import MongoClient
from pymongo.errors import BulkWriteError

from jobs import backup, restore
from jobs.mongo_source import MongoTarget
from jobs.restore import insert
from raychat.clock import FakeClock
from tests.jobs.dataset import NOW_TS


def snapshot(uri: str, db: str) -> dict[str, list[dict]]:
    """Every document of every collection, in _id order."""
    with MongoClient(uri, tz_aware=True) as client:
        d = client[db]
        return {name: list(d[name].find().sort("_id", 1)) for name in sorted(d.list_collection_names())}


def indexes(uri: str, db: str) -> dict[str, dict[str, dict]]:
    with MongoClient(uri) as client:
        d = client[db]
        return {name: {i["name"]: {k: v for k, v in i.items() if k != "ns"} for i in d[name].list_indexes()}
                for name in sorted(d.list_collection_names())}


async def all_events(job_env, db: str) -> dict[str, list[dict]]:
    """Every conversation's events read back through the EventStore adapter, as the gateway reads."""
    stores = job_env.stores(db)
    try:
        return {cid: await stores.events.read_after(cid, 0, 10_000) for cid in job_env.history.conversations}
    finally:
        await stores.close()


@pytest.mark.e2e
def test_backup_then_restore_gives_back_the_same_database(jobs_ray, job_env, capsys):
    where = f"s3://{job_env.out_bucket}/backups/one"
    assert backup.main(["--out", where], clock=FakeClock(NOW_TS)) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    source = snapshot(job_env.mongo_uri, job_env.db)
    assert report["collections"] == {name: len(docs) for name, docs in source.items()}
    assert report["collections"]["events"] == len(job_env.history.all_events())
    manifest = json.loads(job_env.s3.get_object(job_env.out_bucket, "backups/one/manifest.json").read())
    assert manifest["created_at"] == "2027-01-15T08:00:00.000Z"
    assert {i["name"] for i in manifest["collections"]["events"]["indexes"]} >= {"_id_", "conversation_seq"}

    # A backup is never overwritten.
    assert backup.main(["--out", where]) == 1
    assert "holds a backup already" in capsys.readouterr().err

    target = f"restored_{uuid.uuid4().hex[:8]}"
    assert restore.main(["--from", where, "--db", target]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["collections"] == {name: len(docs) for name, docs in source.items()}
    assert snapshot(job_env.mongo_uri, target) == source
    assert indexes(job_env.mongo_uri, target) == indexes(job_env.mongo_uri, job_env.db)
    restored = asyncio.run(all_events(job_env, target))
    assert restored == asyncio.run(all_events(job_env, job_env.db))
    assert sum(map(len, restored.values())) == len(job_env.history.all_events())

    # The target holds data now: refused, untouched; with --force, replaced by the backup again.
    with MongoClient(job_env.mongo_uri) as client:
        client[target]["events"].delete_many({"conversation_id": "c_team"})
    changed = snapshot(job_env.mongo_uri, target)
    assert restore.main(["--from", where, "--db", target]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert snapshot(job_env.mongo_uri, target) == changed
    assert restore.main(["--from", where, "--db", target, "--force"]) == 0
    assert snapshot(job_env.mongo_uri, target) == source


@pytest.mark.e2e
def test_a_backup_of_the_release_before_restores_without_its_retired_index(jobs_ray, job_env, capsys):
    # That release's events carried the unique client_msg_id index filtered on $type, which
    # SecantusDB never reads: the restore builds its successor (ensure_indexes), not it again.
    with MongoClient(job_env.mongo_uri) as client:
        events = client[job_env.db]["events"]
        events.drop_index("conversation_sender_client_msg_id")
        events.create_index([("conversation_id", 1), ("sender_id", 1), ("client_msg_id", 1)],
                            name="conversation_sender_client_msg", unique=True,
                            partialFilterExpression={"client_msg_id": {"$type": "string"}})
    where = f"s3://{job_env.out_bucket}/backups/before"
    assert backup.main(["--out", where]) == 0
    target = f"restored_{uuid.uuid4().hex[:8]}"
    assert restore.main(["--from", where, "--db", target]) == 0
    capsys.readouterr()
    names = set(indexes(job_env.mongo_uri, target)["events"])
    assert "conversation_sender_client_msg_id" in names
    assert "conversation_sender_client_msg" not in names


@pytest.mark.e2e
def test_restore_refuses_a_path_without_a_finished_backup(jobs_ray, job_env, capsys):
    job_env.s3.put_object(job_env.out_bucket, "backups/half/events/part.jsonl", *_bytes(b"{}\n"))
    for where in ("backups/half", "backups/none"):
        assert restore.main(["--from", f"s3://{job_env.out_bucket}/{where}", "--db", "never_made"]) == 1
        assert "no manifest.json" in capsys.readouterr().err
    with MongoClient(job_env.mongo_uri) as client:
        assert "never_made" not in client.list_database_names()


def _bytes(data: bytes):
    import io

    return io.BytesIO(data), len(data)


def test_a_retried_insert_skips_what_is_there_and_nothing_else(mongo_server):
    """Ray may run a restore task twice: the second run's duplicates are expected, not an error;
    any other refusal still is."""
    target = MongoTarget(mongo_server.uri, f"retry_{uuid.uuid4().hex[:8]}")
    docs = [{"_id": i, "n": i} for i in range(5)]
    with target.database() as db:
        assert insert([dict(d) for d in docs], db, "c") == (5, 0)
        assert insert([dict(d) for d in docs[:2]] + [{"_id": 9, "n": 9}], db, "c") == (1, 2)
        assert sorted(d["_id"] for d in db["c"].find()) == [0, 1, 2, 3, 4, 9]
        db["u"].create_index("k", unique=True)
        db["u"].insert_one({"_id": 1, "k": "x"})
        with pytest.raises(BulkWriteError):                  # another document with the same key
            insert([{"_id": 2, "k": "x"}, {"_id": 3, "k": "x"}], db, "u")


@pytest.mark.parametrize("argv", [[], ["--from", "gs://b/p"], ["--from", "s3://b/p", "--db", "a.b"],
                                  ["--from", "s3://b/p", "--db", "x" * 64]])
def test_bad_arguments_are_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        restore.main(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err
