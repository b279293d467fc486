"""The two kinds of push job, and the pure rules that turn one into the other.

A **message job** is what a conversation enqueues per batch of stored messages (one per
group commit, so a burst costs one job); a worker expands it into **delivery jobs**, one per
device of each recipient without a live socket. Each delivery job is retried on its own, so
one failing device never makes the others push twice.

    message  {type, id, conversation_id, members, e2ee, title,
              messages: [{seq, sender_id, preview, has_attachments}], attempt}
    delivery {type, id, device_id, user_id, platform, token, notification, attempt}

``id`` is stable across retries and redeliveries: ``cid:first_seq`` for a message job (the
seqs of two batches never overlap) and ``cid:seq:device_id`` for a delivery job.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from .ports import Notification, Target

PREVIEW_CHARS = 100
E2EE_TITLE = "New message"


def preview(body: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The start of a message for a notification: at most ``limit`` characters, whitespace
    runs folded to one space, an ellipsis when cut."""
    text = " ".join((body or "")[: limit * 4].split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_job(conversation_id: str, events: Sequence[Mapping[str, Any]], members: Iterable[str], *,
                e2ee: bool, title: str | None) -> dict:
    """The job for a batch of stored events of one conversation; only ``message`` events count.
    An e2ee conversation's job carries no text at all (its bodies are ciphertext)."""
    messages = [{"seq": ev["seq"], "sender_id": ev["sender_id"],
                 "preview": None if e2ee else preview(ev.get("body")),
                 "has_attachments": bool(ev.get("attachments"))}
                for ev in events if ev.get("kind") == "message"]
    return {"type": "message", "id": f"{conversation_id}:{messages[0]['seq'] if messages else 0}",
            "conversation_id": conversation_id, "members": list(members), "e2ee": bool(e2ee),
            "title": None if e2ee else title, "messages": messages, "attempt": 0}


def for_recipients(job: Mapping[str, Any], user_ids: Iterable[str]) -> dict:
    """The message job for some of the conversation's members: a host enqueues one for the
    members it owns and sees offline (the worker reads ``members`` as the candidates)."""
    return {**job, "members": list(user_ids)}


def skipped_online(job: Mapping[str, Any], user_ids: Iterable[str], away: Iterable[str]) -> int:
    """How many of ``user_ids`` a job leaves out for being online: those not ``away`` and not the
    lone sender of its messages (the count the worker's ``skipped_online`` outcome would have)."""
    senders = {m["sender_id"] for m in job["messages"]}
    gone = set(away)
    return sum(1 for u in user_ids if u not in gone and senders - {u})


def notification_for(job: Mapping[str, Any], message: Mapping[str, Any], sender_name: str | None) -> Notification:
    """What the push says. e2ee: "New message" and nothing else. Otherwise the sender's name
    (with the group's title) and the preview."""
    cid = job["conversation_id"]
    if job["e2ee"]:
        return Notification(cid, message["seq"], E2EE_TITLE, None, None)
    name = sender_name or "Someone"
    title = f"{name} in {job['title']}" if job.get("title") else name
    body = message.get("preview") or ("sent an attachment" if message.get("has_attachments") else "")
    return Notification(cid, message["seq"], title, body, message["sender_id"])


def offline(user_ids: Iterable[str], presence: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The users without a live socket (presence as the store reads it: status "online" or not)."""
    return [u for u in user_ids if presence.get(u, {}).get("status") != "online"]


def plan(job: Mapping[str, Any], offline_users: Iterable[str], targets: Iterable[Target],
         *, collapse: bool) -> list[tuple[Mapping[str, Any], Target]]:
    """(message, device) pairs to push, in seq order: every device of every offline member
    but the message's sender. With ``collapse``, a device gets only the first message of the
    batch that concerns it (the rest of a burst is what collapsing drops)."""
    away = set(offline_users)
    by_user: dict[str, list[Target]] = {}
    for t in targets:
        if t.user_id in away:
            by_user.setdefault(t.user_id, []).append(t)
    out, seen = [], set()
    for message in job["messages"]:
        for user, devices in by_user.items():
            if user == message["sender_id"]:
                continue
            for t in devices:
                if collapse and t.device_id in seen:
                    continue
                seen.add(t.device_id)
                out.append((message, t))
    return out


def delivery_job(job: Mapping[str, Any], target: Target, notification: Notification) -> dict:
    return {"type": "delivery", "id": f"{job['conversation_id']}:{notification.seq}:{target.device_id}",
            "device_id": target.device_id, "user_id": target.user_id, "platform": target.platform,
            "token": target.token, "notification": notification.to_dict(), "attempt": 0}


def target_of(job: Mapping[str, Any]) -> Target:
    return Target(job["device_id"], job["user_id"], job["platform"], job["token"])


def next_attempt(job: Mapping[str, Any]) -> dict:
    return {**job, "attempt": int(job.get("attempt", 0)) + 1}
