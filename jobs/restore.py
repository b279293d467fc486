"""Restore a backup (jobs/backup.py) into an empty database, with its indexes.

    python -m jobs.restore --from s3://backups/raychat/2026-11-28 [--db raychat] [--force]

The target is RAYCHAT_MONGODB_DB, or ``--db``. It must be empty: no collection holding a
document (collections that exist empty, as after a raychat start, are fine). ``--force`` instead
drops each collection the backup holds before restoring it, like ``mongorestore --drop``; other
collections are left alone.

Each collection's files are read and inserted in parallel by Ray Data, unordered. A task that
Ray retries re-inserts documents that are already there: those duplicate-key refusals are
expected and skipped. Then the indexes: every index raychat's code relies on
(``MongoStores.ensure_indexes``, the same call a gateway makes at start), then any other index
the manifest lists. Last, every collection's count is checked against the manifest: a restore
that did not get every document back fails (exit 1) and says which.

Stop raychat (or keep it from writing) while restoring: writes made meanwhile mix with the restore.
Each conversation then continues from the backup's highest ``seq``: events written after the
backup are gone and their ``seq`` values are handed out again, so clients must drop what they hold
for those conversations (docs/operations.md, "Backups").
"""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any, Sequence

import pyarrow as pa
from pymongo.errors import BulkWriteError

from jobs import cli
from jobs.backup_format import MANIFEST, BadBackup, decode, index_models, parse_manifest
from jobs.files import Location, destination, location
from jobs.mongo_source import MongoTarget
from storage.mongo import MongoStores
from storage.mongo_common import DUPLICATE_KEY
from storage.mongo_events import RETIRED


INSERT_BATCH = 1000


def insert(docs: list[dict[str, Any]], db: Any, collection: str) -> tuple[int, int]:
    """Insert unordered; (inserted, already there). A document refused as a duplicate is fine if
    that very document is stored (a retried task inserted it); any other refusal is an error."""
    if not docs:
        return 0, 0
    try:
        db[collection].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or []
        if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        refused = [docs[e["index"]] for e in errors]
        stored = {d["_id"]: d for d in db[collection].find({"_id": {"$in": [d["_id"] for d in refused]}})}
        if any(stored.get(d["_id"]) != d for d in refused):
            raise
        return len(docs) - len(errors), len(errors)
    return len(docs), 0


def restore_files(batch: pa.Table, *, target: MongoTarget, fs: Any) -> dict[str, list]:
    """Each row a backup file (collection, path): its documents, streamed in batches."""
    out: dict[str, list] = {"collection": [], "inserted": [], "duplicates": []}
    with target.database() as db:
        for row in batch.to_pylist():
            inserted = duplicates = 0
            docs: list[dict[str, Any]] = []
            with fs.open_input_stream(row["path"]) as f:
                for raw in io.TextIOWrapper(f, encoding="utf-8"):
                    if raw.strip():
                        docs.append(decode(raw))
                    if len(docs) >= INSERT_BATCH:
                        done = insert(docs, db, row["collection"])
                        inserted, duplicates, docs = inserted + done[0], duplicates + done[1], []
            done = insert(docs, db, row["collection"])
            out["collection"].append(row["collection"])
            out["inserted"].append(inserted + done[0])
            out["duplicates"].append(duplicates + done[1])
    return out


def non_empty(target: MongoTarget) -> list[str]:
    with target.database() as db:
        return sorted(name for name in db.list_collection_names()
                      if not name.startswith("system.") and db[name].count_documents({}, limit=1))


async def _ensure_indexes(target: MongoTarget) -> None:
    stores = MongoStores(target.uri, target.db, write_concern=target.write_concern, journal=target.journal,
                         timeout_ms=max(target.timeout_ms, 60_000))    # index builds over restored data
    try:
        await stores.ensure_indexes()
    finally:
        await stores.close()


def run(target: MongoTarget, source: Location, force: bool) -> dict[str, Any]:
    import ray

    if not source.join(MANIFEST).exists():
        raise cli.JobError(f"no backup at {source.url}: no manifest.json (a wrong path, or a backup that "
                           "did not finish)")
    try:
        body = parse_manifest(source.join(MANIFEST).read_text())
    except BadBackup as exc:
        raise cli.JobError(f"{source.url}: {exc}") from None
    collections: dict[str, Any] = body["collections"]
    occupied = non_empty(target)
    if occupied and not force:
        raise cli.JobError(f"database {target.db!r} is not empty ({', '.join(occupied[:10])} hold documents); "
                           "restore into an empty database, or pass --force to drop the backed-up collections")
    with target.database() as db:
        for name, c in collections.items():
            if force:
                db.drop_collection(name)
            if name not in db.list_collection_names():
                db.create_collection(name, **c.get("options", {}))
    files = [{"collection": name, "path": path} for name in collections for path in source.join(name).files()]
    duplicates = 0
    if files:
        # Every file of every collection in one pipeline, spread over the cluster.
        done = (ray.data.from_items(files, override_num_blocks=min(len(files), 4 * cli.cluster_cpus()))
                .map_batches(restore_files, batch_size=1, batch_format="pyarrow",
                             fn_kwargs={"target": target, "fs": source.fs})
                .take_all())
        duplicates = sum(int(row["duplicates"]) for row in done)
    asyncio.run(_ensure_indexes(target))
    with target.database() as db:
        for name, c in collections.items():
            # An index a newer release replaced (a backup of the release before lists it) is not
            # built again: its successor is in ``present``.
            present = {i["name"] for i in db[name].list_indexes()} | set(RETIRED)
            models = index_models(c["indexes"], skip=present)
            if models:
                db[name].create_indexes(models)
        counts = {name: db[name].count_documents({}) for name in collections}
    missing = {name: (counts[name], c["count"]) for name, c in collections.items() if counts[name] != c["count"]}
    if missing:
        raise cli.JobError("restore incomplete: " + ", ".join(f"{name} has {got} of {want} documents"
                                                              for name, (got, want) in sorted(missing.items())))
    return {"job": "restore", "from": source.url, "database": target.db, "collections": counts,
            "retried_duplicates": duplicates, "backup_created_at": body.get("created_at")}


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("restore", "Restore a backup into an empty database and recreate its indexes.")
    p.add_argument("--from", dest="source", type=destination, required=True,
                   help="the backup: s3://bucket/prefix or a local directory")
    p.add_argument("--db", type=cli.db_name, default=None, help="the database to restore into; default: RAYCHAT_MONGODB_DB")
    p.add_argument("--force", action="store_true",
                   help="drop each collection the backup holds before restoring it (the database may hold data)")
    args = p.parse_args(argv)
    settings = cli.settings()

    def body() -> dict[str, Any]:
        cli.start_ray(args.address)
        return run(MongoTarget.from_settings(settings, db=args.db), location(args.source, settings), args.force)

    return cli.run("restore", body)


if __name__ == "__main__":
    sys.exit(main())
