"""Export one user's data as JSON lines: profile, messages, conversations, media list.

    python -m jobs.export_user --user-id u_0123abcd --out s3://exports/raychat

    <out>/<user_id>/profile/*.jsonl        user_id, username, display_name, created_at
    <out>/<user_id>/messages/*.jsonl       every message they sent, as the history page shows it
                                           (docs/protocol.md): edits applied, a deleted one with
                                           ``deleted: true`` and no body, reactions as {emoji: count}
    <out>/<user_id>/conversations/*.jsonl  the conversations they are a member of: metadata, members
                                           and roles, and their own read cursor (``read``) only
    <out>/<user_id>/media/*.jsonl          their uploads: id, file name, type, size, time, the
                                           conversations it was sent to, and its object ``key`` in
                                           RAYCHAT_S3_BUCKET (no links: presigned ones would expire)
    <out>/<user_id>/manifest.json          what was written, with counts; written last

Every field is taken from an allowlist: no password hash, no other member's read cursor, no
internal field, and nothing added to the store later leaks without a change here. Lines are in no
particular order; each message carries ``conversation_id`` and ``seq``. Re-running replaces the
user's export. Messages are found by scanning events (there is no index on ``sender_id``), in
parallel ``_id`` ranges over the cluster; conversations and media by their indexes.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from functools import partial
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from actors.events import dumps, event_to_wire
from jobs import cli
from jobs.files import GROUP, LINE, LinesDatasink, Location, destination, location
from jobs.mongo_source import MongoDatasource, MongoTarget, read_mongo
from raychat.clock import iso
from storage.mongo_conversations import merged
from storage.ports import PROFILE_FIELDS

LINES = pa.schema([(GROUP, pa.string()), (LINE, pa.string())])
GROUPS = ("profile", "messages", "conversations", "media")
PROFILE = ("username", "created_at", *sorted(PROFILE_FIELDS))
CONVERSATION = ("kind", "title", "members", "roles", "e2ee", "created_at", "last_activity_at", "last_seq",
                "message_count", "retention_days")
MEDIA = ("filename", "content_type", "size", "created_at", "conversations", "key")


def line(group: str, obj: Mapping[str, Any]) -> dict[str, str]:
    return {GROUP: group, LINE: dumps({k: iso(v) if isinstance(v, datetime) else v for k, v in obj.items()})}


def message_rows(doc: Mapping[str, Any]) -> Iterable[dict[str, str]]:
    return (line("messages", event_to_wire(doc)),)


def conversation_rows(doc: Mapping[str, Any], user_id: str,
                      progress: Mapping[str, Mapping[str, Any]] | None = None) -> Iterable[dict[str, str]]:
    # The newest counts and the user's cursor are in the progress document (see storage/mongo_conversations.py).
    doc = merged(dict(doc), (progress or {}).get(doc["_id"]))
    out = {"conversation_id": doc["_id"], **{k: doc[k] for k in CONVERSATION if k in doc}}
    read = (doc.get("reads") or {}).get(user_id)
    out["read"] = {"seq": read.get("seq", 0), "count": read.get("count", 0)} if isinstance(read, dict) else None
    return (line("conversations", out),)


def media_rows(doc: Mapping[str, Any]) -> Iterable[dict[str, str]]:
    return (line("media", {"media_id": doc["_id"], **{k: doc[k] for k in MEDIA if k in doc}}),)


def run(target: MongoTarget, out: Location, user_id: str) -> dict[str, Any]:
    import ray

    with target.database() as db:
        user = db["users"].find_one({"_id": user_id})
        if user is None:
            raise cli.JobError(f"no such user {user_id!r}; nothing written")
        ids = [d["_id"] for d in db["conversations"].find({"members": user_id}, {"_id": 1})]
        # Only what the export shows of each: the counts and this user's own cursor.
        progress = {p["_id"]: p for p in db["conversation_progress"].find(
            {"_id": {"$in": ids}}, {"state_seq": 1, "last_seq": 1, "message_count": 1, f"reads.{user_id}": 1})}
    home = out.join(user_id)
    profile = line("profile", {"user_id": user_id, **{k: user[k] for k in PROFILE if k in user}})
    parts = [
        ray.data.from_items([profile]),
        read_mongo(MongoDatasource(target, "events", message_rows, LINES,
                                   query={"sender_id": user_id, "kind": "message"})),
        read_mongo(MongoDatasource(target, "conversations", partial(conversation_rows, user_id=user_id, progress=progress), LINES,
                                   query={"members": user_id})),
        read_mongo(MongoDatasource(target, "media", media_rows, LINES, query={"owner_id": user_id})),
    ]
    # A re-run replaces the export; its manifest goes first, so no manifest describes a half export.
    manifest = home.join("manifest.json")
    if manifest.exists():
        manifest.fs.delete_file(manifest.path)
    for name in GROUPS:
        home.join(name).clear()
    sink = LinesDatasink(home)
    parts[0].union(*parts[1:]).write_datasink(sink)
    report = {"job": "export_user", "user_id": user_id, "out": home.url,
              "counts": {name: sink.counts.get(name, 0) for name in GROUPS}}
    manifest.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("export_user", "Export one user's messages, conversations and media list as JSON lines.")
    p.add_argument("--user-id", type=cli.safe_id, required=True, help="the user's id (u_...)")
    p.add_argument("--out", type=destination, required=True, help="s3://bucket/prefix or a local directory")
    args = p.parse_args(argv)
    settings = cli.settings()

    def body() -> dict[str, Any]:
        cli.start_ray(args.address)
        return run(MongoTarget.from_settings(settings), location(args.out, settings), args.user_id)

    return cli.run("export_user", body)


if __name__ == "__main__":
    sys.exit(main())
