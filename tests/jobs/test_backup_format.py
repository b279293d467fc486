"""The backup format alone (jobs/backup_format.py): exact round trips and a checked manifest."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import bson
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from jobs.backup_format import BadBackup, decode, encode, index_models, manifest, parse_manifest


def test_every_bson_type_comes_back_exactly():
    doc = {"_id": ObjectId(), "int32": 7, "int64": Int64(7), "double": 7.0, "big": 2**62,
           "dec": Decimal128(Decimal("0.1")), "at": datetime(2027, 1, 15, 8, 0, 0, 123000, tzinfo=timezone.utc),
           "far": DatetimeMS(2**62), "bin": Binary(b"\x00\xff", 0), "uuid": Binary(uuid.uuid4().bytes, 4),
           "re": Regex("^a", "i"), "ts": Timestamp(1, 2), "none": None, "nested": {"z": 1, "a": [1, "x", {"b": True}]},
           "emoji": "👍 \n \u2028"}
    back = decode(encode(doc))
    # Byte for byte the same BSON: types (int32/int64/double), order and precision included.
    assert bson.encode(back) == bson.encode(doc)
    assert "\n" not in encode(doc)                                  # one document, one line


def test_manifest_round_trips_with_index_specs():
    spec = {"v": 2, "key": {"conversation_id": 1, "seq": 1}, "name": "conversation_seq", "unique": True}
    partial = {"v": 2, "key": {"direct_key": 1}, "name": "direct_key", "unique": True,
               "partialFilterExpression": {"direct_key": {"$type": "string"}}}
    text = manifest("raychat", "2027-01-15T08:00:00.000Z",
                    {"events": {"count": 3, "indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"}, spec]},
                     "conversations": {"count": 0, "indexes": [partial]}})
    body = parse_manifest(text)
    assert list(body["collections"]) == ["conversations", "events"]
    models = index_models(body["collections"]["events"]["indexes"])
    assert [m.document for m in models] == [{"key": {"conversation_id": 1, "seq": 1}, "name": "conversation_seq",
                                              "unique": True}]
    assert index_models(body["collections"]["conversations"]["indexes"], skip={"direct_key"}) == []
    assert index_models(body["collections"]["conversations"]["indexes"])[0].document["partialFilterExpression"] == \
        {"direct_key": {"$type": "string"}}


@pytest.mark.parametrize("text, complaint", [
    ("not json", "not JSON"),
    (json.dumps({"format": "other/1", "collections": {}}), "not a raychat-backup/1 manifest"),
    (json.dumps({"format": "raychat-backup/1"}), "no collections"),
    (json.dumps({"format": "raychat-backup/1", "collections": {"events": {"count": -1}}}), "count"),
    (json.dumps({"format": "raychat-backup/1", "collections": {"events": {"count": "3"}}}), "count"),
    (json.dumps({"format": "raychat-backup/1", "collections": {"system.users": {"count": 1}}}), "cannot be restored"),
    (json.dumps({"format": "raychat-backup/1", "collections": {"e": {"count": 1, "indexes": [{"name": "x"}]}}}),
     "without a name or key"),
])
def test_a_bad_manifest_is_refused_with_the_reason(text, complaint):
    with pytest.raises(BadBackup, match=complaint):
        parse_manifest(text)
