"""Conversation events: building them, and their wire form (PROTOCOL.md, "Messages and events").

Stored events carry ``created_at`` as a datetime; on the wire it is an ISO 8601
string. A frame is serialized once per event and the same text goes to every socket.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from raychat.clock import iso

_WIRE_FIELDS = ("conversation_id", "seq", "kind", "sender_id", "client_msg_id", "body", "attachments",
                "reply_to", "target_seq", "emoji", "on", "user_ids", "role", "title", "created_at")


def event_to_wire(ev: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _WIRE_FIELDS:
        if name in ev:
            out[name] = ev[name]
    ca = ev.get("created_at")
    if isinstance(ca, datetime):
        out["created_at"] = iso(ca)
    return out


def event_frame(ev: dict[str, Any]) -> str:
    return dumps({"type": "event", **event_to_wire(ev)})


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def utc(ts: float) -> datetime:
    # Millisecond precision: what MongoDB stores, so a reloaded event equals the one acked.
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)
