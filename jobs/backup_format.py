"""The backup format, shared by jobs/backup.py and jobs/restore.py; no Ray.

    <backup>/manifest.json          written last: a backup without one is incomplete
    <backup>/<collection>/*.jsonl   one document per line, canonical MongoDB Extended JSON v2

Canonical Extended JSON (pymongo's ``bson.json_util``) keeps every BSON type exactly: int32,
int64 and double stay apart, times keep their milliseconds, ObjectIds, binaries and decimals come
back as they were, and field order is kept. Unlike BSON files it can be read with any JSON tool
(``jq``, ``mongoimport --legacy=false``).

The manifest names each collection with its document count, its options and its index specs as
``listIndexes`` gave them (relaxed Extended JSON), so a restore recreates the indexes and checks
it got every document back.
"""

from __future__ import annotations

import json
from datetime import timezone
from typing import Any, Mapping

from bson import json_util
from bson.json_util import DatetimeConversion, JSONMode, JSONOptions
from pymongo import IndexModel

FORMAT = "raychat-backup/1"
MANIFEST = "manifest.json"
CANONICAL = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=True, tzinfo=timezone.utc,
                        # a date outside Python's datetime range comes back as what it was
                        datetime_conversion=DatetimeConversion.DATETIME_AUTO)
RELAXED = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=timezone.utc)
# listIndexes fields that describe the index rather than ask for one.
_NOT_OPTIONS = frozenset({"v", "key", "ns"})


class BadBackup(ValueError):
    """A manifest this restore cannot trust; the message says what is wrong."""


def encode(doc: Mapping[str, Any]) -> str:
    return json_util.dumps(doc, json_options=CANONICAL)


def decode(line: str) -> dict[str, Any]:
    return json_util.loads(line, json_options=CANONICAL)


def manifest(database: str, created_at: str, collections: Mapping[str, Mapping[str, Any]]) -> str:
    """The manifest text. ``collections``: name -> {count, options, indexes (listIndexes specs)}."""
    body = {"format": FORMAT, "database": database, "created_at": created_at,
            "collections": {name: {"count": c["count"], "options": c.get("options") or {},
                                   "indexes": list(c.get("indexes") or [])}
                            for name, c in sorted(collections.items())}}
    return json_util.dumps(body, json_options=RELAXED, indent=2) + "\n"


def parse_manifest(text: str) -> dict[str, Any]:
    """The manifest, checked: right format, and for every collection a count, options and indexes."""
    try:
        body = json_util.loads(text, json_options=RELAXED)
    except (ValueError, TypeError) as exc:
        raise BadBackup(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise BadBackup(f"manifest.json is not a {FORMAT} manifest")
    collections = body.get("collections")
    if not isinstance(collections, dict):
        raise BadBackup("manifest.json has no collections")
    for name, c in collections.items():
        if not isinstance(name, str) or not name or name.startswith("system.") or "$" in name:
            raise BadBackup(f"manifest.json names a collection {name!r} that cannot be restored")
        count = c.get("count") if isinstance(c, dict) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadBackup(f"manifest.json: {name}: count must be a whole number")
        if not isinstance(c.get("options", {}), dict) or not isinstance(c.get("indexes", []), list):
            raise BadBackup(f"manifest.json: {name}: options must be an object and indexes a list")
        for spec in c.get("indexes", []):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
                    or not isinstance(spec.get("key"), dict) or not spec["key"]:
                raise BadBackup(f"manifest.json: {name}: an index without a name or key: {json.dumps(spec)[:200]}")
    return body


def index_models(specs: list[Mapping[str, Any]], skip: set[str] | frozenset[str] = frozenset()) -> list[IndexModel]:
    """IndexModels for the specs, but ``_id_`` (always there) and the names in ``skip``."""
    return [IndexModel(list(spec["key"].items()), **{k: v for k, v in spec.items() if k not in _NOT_OPTIONS})
            for spec in specs if spec["name"] != "_id_" and spec["name"] not in skip]
