"""What the retention job may delete: pure rules, no Ray, no driver (jobs/retention.py runs them).

A conversation's policy is its document's ``retention_days`` (a whole number of days, at least 1);
absent or null, the job's ``--default-days`` applies; with neither, it keeps everything. Any other
value is a broken policy: that conversation is left alone and counted, never guessed at.

An event *expires* when it is older than the policy (``created_at`` before now − days) and all of:

- it is not the conversation's newest stored event. The conversation actor takes its next seq
  from the highest stored one (actors/conversation.py, ``on_activate`` → ``last_seq``); with the
  newest gone, the next message would reuse a seq clients have already seen. The newest event is
  kept but *emptied* once it expires: body, attachments, reactions and search terms removed, a
  message marked ``deleted`` exactly as a deleted message is. Its seq, kind, sender and time stay.
- it is at or below the conversation's checkpoint (``state_seq``). Activation replays the events
  past the checkpoint into the roster and projections; those are left for a later run.
- it is not a membership event (``member_added`` / ``member_removed``). Which events a member may
  see is computed from them (gateway/chat_service.py, visible events: a member removed and added
  back does not see what happened in between). Deleting an old removal would show the re-added
  member everything after it that survives. They carry user ids only.

A media expires with the last message that attaches it: it goes when every event that lists it in
``attachments`` expires (or is emptied); a media also attached to a surviving message stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

MEMBERSHIP = ("member_added", "member_removed")
# What an emptied event loses: everything that carries content.
EMPTIED_FIELDS = ("body", "attachments", "reactions", "terms")


class BadPolicy(ValueError):
    """A ``retention_days`` value that is not a whole number of days >= 1."""


def retention_days(conversation: Mapping[str, Any], default_days: int | None) -> int | None:
    """The conversation's retention in days, or None to keep everything; BadPolicy if broken."""
    days = conversation.get("retention_days")
    if days is None:
        return default_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise BadPolicy(f"retention_days {days!r} is not a whole number of days >= 1")
    return days


@dataclass(frozen=True)
class Plan:
    """What retention does to one conversation, decided from its state at planning time."""

    conversation_id: str
    cutoff: datetime           # events created before this are old
    upto_seq: int              # only events at or below this seq are deleted: min(state_seq, newest - 1)
    newest_seq: int            # the newest stored event: never deleted
    newest_kind: str
    empty_newest: bool         # ...but emptied: it is old, checkpointed and not a membership event

    def deletes(self, event: Mapping[str, Any]) -> bool:
        """True if the plan deletes this event of its conversation (same test as ``delete_filter``)."""
        return (event["seq"] <= self.upto_seq and event["created_at"] < self.cutoff
                and event.get("kind") not in MEMBERSHIP)

    def expires(self, event: Mapping[str, Any]) -> bool:
        """True if the event's content goes: deleted, or the emptied newest event."""
        return self.deletes(event) or (self.empty_newest and event["seq"] == self.newest_seq)

    def delete_filter(self, lo: int = 0, hi: int | None = None) -> dict[str, Any]:
        """The events this plan deletes with lo < seq <= hi (hi at most ``upto_seq``)."""
        top = self.upto_seq if hi is None else min(hi, self.upto_seq)
        return {"conversation_id": self.conversation_id, "seq": {"$gt": lo, "$lte": top},
                "created_at": {"$lt": self.cutoff}, "kind": {"$nin": list(MEMBERSHIP)}}

    def newest_filter(self) -> dict[str, Any]:
        """The newest event, while it still holds what emptying removes (idempotent re-runs)."""
        return {"conversation_id": self.conversation_id, "seq": self.newest_seq,
                "created_at": {"$lt": self.cutoff}, "kind": {"$nin": list(MEMBERSHIP)}}


def plan(conversation_id: str, days: int, now: datetime, state_seq: int,
         newest: Mapping[str, Any] | None) -> Plan | None:
    """The plan for a conversation with a policy of ``days``; None if it has no events."""
    if newest is None:
        return None
    cutoff = now - timedelta(days=days)
    newest_seq = int(newest["seq"])
    empty = (newest_seq <= state_seq and newest["created_at"] < cutoff
             and newest.get("kind") not in MEMBERSHIP)
    return Plan(conversation_id, cutoff, max(0, min(state_seq, newest_seq - 1)), newest_seq,
                str(newest.get("kind") or ""), empty)


def emptied(plan: Plan) -> dict[str, Any]:
    """The update that empties an expired newest event; a message reads as a deleted one."""
    update: dict[str, Any] = {"$unset": {f: "" for f in EMPTIED_FIELDS}}
    if plan.newest_kind == "message":
        update["$set"] = {"deleted": True}
    return update


def unreferenced(candidates: Iterable[str], references: Iterable[Mapping[str, Any]],
                 plans: Mapping[str, Plan]) -> set[str]:
    """The candidate media ids that no surviving event attaches.

    ``references`` are the events (conversation_id, seq, kind, created_at, attachments) that list
    any candidate; an event survives unless its conversation's plan expires it.
    """
    left = set(candidates)
    for event in references:
        p = plans.get(event["conversation_id"])
        if p is None or not p.expires(event):
            left.difference_update(event.get("attachments") or ())
    return left
