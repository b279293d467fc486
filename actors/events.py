"""Conversation events: building them, and their wire form (PROTOCOL.md, "Messages and events").

Stored events carry ``created_at`` as a datetime; on the wire it is an ISO 8601
string. A frame is serialized once per event and the same text goes to every socket.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from raychat.clock import iso

# The store keeps seq as a 64-bit integer (BSON int64): a larger one cannot even be looked up, so the
# edges refuse it as invalid input.
MAX_SEQ = 2**63 - 1

_WIRE_FIELDS = ("conversation_id", "seq", "kind", "sender_id", "client_msg_id", "body", "attachments",
                "reply_to", "target_seq", "emoji", "on", "user_ids", "role", "title", "created_at",
                "edited_at", "deleted")


def event_to_wire(ev: dict[str, Any]) -> dict[str, Any]:
    """The wire form. A stored message carries its projections: the edited body and
    ``edited_at``, ``deleted: true`` with no body, and ``reactions`` as {emoji: count}."""
    out: dict[str, Any] = {}
    for name in _WIRE_FIELDS:
        if name in ev:
            value = ev[name]
            out[name] = iso(value) if isinstance(value, datetime) else value
    if ev.get("kind") == "message" and "reactions" in ev:
        counts: dict[str, int] = {}
        for r in ev["reactions"] or ():
            counts[r["emoji"]] = counts.get(r["emoji"], 0) + 1
        out["reactions"] = counts
    if ev.get("deleted"):
        out.pop("body", None)
        out.pop("attachments", None)
    return out


def event_frame(ev: dict[str, Any]) -> str:
    return dumps({"type": "event", **event_to_wire(ev)})


_CREATED_AT = '"created_at":"'


def created_at_of(frame: str) -> float | None:
    """An event frame's ``created_at`` as epoch seconds (None if it has none), without decoding
    the frame: the gateway times each delivery, and a frame may carry a 64 KiB body. Exact for
    frames made by ``dumps``: a JSON string escapes its quotes, so no value can hold the key."""
    start = frame.find(_CREATED_AT)
    if start < 0:
        return None
    start += len(_CREATED_AT)
    try:
        return datetime.fromisoformat(frame[start:frame.index('"', start)]).timestamp()
    except ValueError:
        return None


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def utc(ts: float) -> datetime:
    # Millisecond precision: what MongoDB stores, so a reloaded event equals the one acked.
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)
