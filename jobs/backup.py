"""Back up every collection of raychat's database to S3 (or a local directory).

    python -m jobs.backup --out s3://backups/raychat/2026-11-28

Writes the format of jobs/backup_format.py: one directory of Extended JSON lines per collection,
read in parallel ``_id`` ranges over the cluster, then ``manifest.json`` (counts, options, index
specs). A destination that holds a manifest already is refused: a backup is never overwritten.
A run that fails leaves no manifest, so restore refuses it, and running again to the same
destination replaces its partial files.

Like mongodump without ``--oplog``, this is not a point-in-time snapshot of a live database: a
document written during the backup may or may not be in it. Each collection's count in the
manifest is exactly the number of documents written, and restore checks it. For a consistent
copy under load, back up from a hidden secondary or a filesystem snapshot.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from jobs import cli
from jobs.backup_format import MANIFEST, encode, manifest
from jobs.files import GROUP, LINE, LinesDatasink, Location, destination, location
from jobs.mongo_source import MongoDatasource, MongoTarget, read_mongo
from raychat.clock import Clock, SystemClock, iso

LINES = pa.schema([(GROUP, pa.string()), (LINE, pa.string())])


def document_rows(doc: Mapping[str, Any], collection: str) -> Iterable[dict[str, str]]:
    return ({GROUP: collection, LINE: encode(doc)},)


def run(target: MongoTarget, out: Location, now: float) -> dict[str, Any]:
    if out.join(MANIFEST).exists():
        raise cli.JobError(f"{out.url} holds a backup already (manifest.json); choose a new destination")
    with target.database() as db:
        listed = [c for c in db.list_collections()
                  if c.get("type", "collection") == "collection" and not c["name"].startswith("system.")]
        specs = {c["name"]: {"options": c.get("options") or {},
                             "indexes": [dict(i) for i in db[c["name"]].list_indexes()]} for c in listed}
    if specs:
        # Every collection in one pipeline: their reads run side by side over the cluster.
        sources = [read_mongo(MongoDatasource(target, name, partial(document_rows, collection=name), LINES))
                   for name in sorted(specs)]
        for name in specs:
            out.join(name).clear()           # what a failed run left behind
        sink = LinesDatasink(out)
        (sources[0].union(*sources[1:]) if len(sources) > 1 else sources[0]).write_datasink(sink)
        for name, spec in specs.items():
            spec["count"] = sink.counts.get(name, 0)
    out.join(MANIFEST).write_text(manifest(target.db, iso(now), specs))
    return {"job": "backup", "out": out.url, "database": target.db,
            "collections": {name: spec["count"] for name, spec in sorted(specs.items())}}


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()
    p = cli.parser("backup", "Back up every collection (Extended JSON lines + manifest) to S3 or a directory.")
    p.add_argument("--out", type=destination, required=True, help="s3://bucket/prefix or a local directory (new)")
    args = p.parse_args(argv)
    settings = cli.settings()

    def body() -> dict[str, Any]:
        cli.start_ray(args.address)
        return run(MongoTarget.from_settings(settings), location(args.out, settings), clock.now())

    return cli.run("backup", body)


if __name__ == "__main__":
    sys.exit(main())
