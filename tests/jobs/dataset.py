"""A small, deterministic chat history for the job tests, stored through raychat's own adapters.

Six conversations over six days before ``NOW``; each shape is there for a rule some job must keep:

    c_team    group (alice, bob, carol), retention 3 days; carol removed on day 5 and added back
              on day 1; edits, reactions, a deleted message; most of the traffic
    c_direct  direct (alice, bob), no policy; one recent message attaches m3
    c_media   group (alice, dave), retention 2 days; m1 on an old message only, m2 on an old and a
              recent one, m3 on an old one here and a recent one in c_direct, m4 on a recent one
    c_quiet   direct (alice, erin), retention 1 day; silent for 4 days: every event is old, the
              newest is a message attaching m5
    c_lag     direct (bob, erin), retention 1 day; old, but the checkpoint (state_seq) is at 5 of 10
    c_broken  direct (alice, dave), retention_days "30" (a string): a broken policy

Media objects are real objects in the S3 bucket at ``<owner_id>/<media_id>``; dave owns m6, on a
recent message of c_media, the rest are alice's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from minio import Minio
from pymongo import MongoClient

from storage.mongo import MongoStores

NOW_TS = 1_800_000_000.0                       # 2027-01-15T08:00:00Z
NOW = datetime.fromtimestamp(NOW_TS, tz=timezone.utc)
USERS = ("u_alice", "u_bob", "u_carol", "u_dave", "u_erin")
POLICIES: dict[str, Any] = {"c_team": 3, "c_media": 2, "c_quiet": 1, "c_lag": 1, "c_broken": "30"}
MEDIA_OWNER = {"m1": "u_alice", "m2": "u_alice", "m3": "u_alice", "m4": "u_alice", "m5": "u_alice",
               "m6": "u_dave"}


@dataclass
class Conv:
    cid: str
    kind: str
    members: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    state_seq: int | None = None          # None: checkpointed up to the last event

    def add(self, kind: str, sender: str, at: datetime, **fields: Any) -> dict[str, Any]:
        seq = len(self.events) + 1
        ev = {"conversation_id": self.cid, "seq": seq, "kind": kind, "sender_id": sender,
              "client_msg_id": f"k{seq}" if kind == "message" else None, **fields,
              "created_at": at.replace(microsecond=at.microsecond // 1000 * 1000)}
        if kind == "message":
            ev.setdefault("attachments", [])
            ev.setdefault("reply_to", None)
        self.events.append(ev)
        return ev

    def say(self, sender: str, at: datetime, body: str, attachments: tuple[str, ...] = ()) -> dict[str, Any]:
        return self.add("message", sender, at, body=body, attachments=list(attachments))


@dataclass
class History:
    conversations: dict[str, Conv]
    media: dict[str, dict[str, Any]]          # media_id -> record

    def all_events(self) -> list[dict[str, Any]]:
        return [ev for conv in self.conversations.values() for ev in conv.events]


def day(days_ago: float, hour: float = 0.0) -> datetime:
    """A time ``days_ago`` days before NOW's midnight, plus ``hour`` hours."""
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days_ago) + timedelta(hours=hour)


def build(seed: int = 7) -> History:
    rnd = random.Random(seed)
    team = Conv("c_team", "group", ["u_alice", "u_bob", "u_carol"])
    for days_ago in range(6, -1, -1):
        if days_ago == 1:
            team.add("member_added", "u_alice", day(1, 0.5), user_ids=["u_carol"])
        for i in range(24):
            at = day(days_ago, 1 + i * 0.3)
            if days_ago == 5 and i == 12:
                team.add("member_removed", "u_alice", at, user_ids=["u_carol"])
                continue
            if (days_ago, i) in ((4, 20), (0, 23)):        # alice, the owner, deletes her own and bob's
                whose = "u_alice" if days_ago == 4 else "u_bob"
                target = [e for e in team.events if e["kind"] == "message" and e["sender_id"] == whose][-3]
                team.add("delete", "u_alice", at, target_seq=target["seq"])
                continue
            carol_in = days_ago == 6 or (days_ago == 5 and i < 12) or days_ago <= 1
            senders = ["u_alice", "u_bob"] + (["u_carol"] if carol_in else [])
            sender = rnd.choice(senders)
            r = rnd.random()
            messages = [e for e in team.events if e["kind"] == "message"]
            if r < 0.12 and messages:
                target = rnd.choice([m for m in messages if m["sender_id"] == sender] or messages)
                if target["sender_id"] == sender:
                    team.add("edit", sender, at, target_seq=target["seq"], body=f"edited by {sender} #{i}")
                    continue
            if r < 0.25 and messages:
                team.add("reaction", sender, at, target_seq=rnd.choice(messages)["seq"], emoji=rnd.choice("👍🎉"),
                         on=True)
                continue
            team.say(sender, at, f"{sender} says {rnd.randint(0, 10**6)} on day -{days_ago}")

    direct = Conv("c_direct", "direct", ["u_alice", "u_bob"])
    for days_ago in range(6, -1, -1):
        for i in range(10):
            direct.say(USERS[i % 2], day(days_ago, 1 + i * 0.5), f"direct {days_ago}/{i}")
    direct.say("u_alice", day(0, 7), "recent, with m3", ("m3",))

    media_conv = Conv("c_media", "group", ["u_alice", "u_dave"])
    media_conv.say("u_alice", day(5, 3), "m1 alone", ("m1",))
    media_conv.say("u_alice", day(5, 4), "m2 first", ("m2",))
    media_conv.say("u_alice", day(4, 4), "m3 here, old", ("m3",))
    for i in range(20):
        media_conv.say("u_dave" if i % 3 else "u_alice", day(4 - i // 5, 5 + i % 5), f"chatter {i}")
    media_conv.say("u_alice", day(0, 3), "m2 again", ("m2",))
    media_conv.say("u_alice", day(0, 4), "m4", ("m4",))
    media_conv.say("u_dave", day(0, 5), "dave's m6", ("m6",))

    quiet = Conv("c_quiet", "direct", ["u_alice", "u_erin"])
    for i in range(18):
        quiet.say("u_erin" if i % 2 else "u_alice", day(5 - i // 9, 6 + i % 9), f"quiet {i}")
    quiet.add("reaction", "u_erin", day(4, 16), target_seq=3, emoji="🎉", on=True)
    quiet.say("u_alice", day(4, 17), "the last word, with m5", ("m5",))

    lag = Conv("c_lag", "direct", ["u_bob", "u_erin"], state_seq=5)
    for i in range(10):
        lag.say("u_bob" if i % 2 else "u_erin", day(3, 1 + i), f"lag {i}")

    broken = Conv("c_broken", "direct", ["u_alice", "u_dave"])
    for i in range(10):
        broken.say("u_alice" if i % 2 else "u_dave", day(5, 1 + i), f"broken {i}")

    media = {mid: {"media_id": mid, "owner_id": owner, "key": f"{owner}/{mid}", "filename": f"{mid}.png",
                   "content_type": "image/png", "size": 64 + i, "created_at": day(6)}
             for i, (mid, owner) in enumerate(MEDIA_OWNER.items())}
    convs = {c.cid: c for c in (team, direct, media_conv, quiet, lag, broken)}
    return History(convs, media)


async def load(history: History, stores: MongoStores, mongo_uri: str, db_name: str, s3: Minio,
               bucket: str) -> None:
    """Store the history as the gateway and the conversation actors would have."""
    import io

    for uid in USERS:
        await stores.users.create({"user_id": uid, "username": uid[2:], "password_hash": f"argon2-of-{uid}",
                                   "display_name": uid[2:].title(), "created_at": day(7)})
    for conv in history.conversations.values():
        roles = {m: ("owner" if i == 0 else "member") for i, m in enumerate(conv.members)}
        await stores.conversations.create({
            "conversation_id": conv.cid, "kind": conv.kind, "title": None if conv.kind == "direct" else conv.cid,
            "members": conv.members, "roles": roles, "created_at": day(7), "last_seq": 0,
            "last_activity_at": day(7), "e2ee": False, "state_seq": 0, "message_count": 0})
        await stores.events.append(conv.events)
        for ev in conv.events:                  # the projections the actor applies
            if ev["kind"] == "edit":
                await stores.events.edit_message(conv.cid, ev["target_seq"], ev["body"], ev["created_at"])
            elif ev["kind"] == "delete":
                await stores.events.erase_message(conv.cid, ev["target_seq"])
            elif ev["kind"] == "reaction":
                await stores.events.set_reaction(conv.cid, ev["target_seq"], ev["sender_id"], ev["emoji"], ev["on"])
        messages = [e for e in conv.events if e["kind"] == "message"]
        last = conv.events[-1]["seq"]
        checkpoint = conv.state_seq if conv.state_seq is not None else last
        last_message = messages[-1]
        await stores.conversations.save_progress(conv.cid, {
            "state_seq": checkpoint, "last_seq": checkpoint, "message_count": len(messages),
            "members": conv.members, "roles": roles, "title": None if conv.kind == "direct" else conv.cid,
            "last_message": {"seq": last_message["seq"], "sender_id": last_message["sender_id"], "kind": "message",
                             "body": last_message["body"][:200], "created_at": last_message["created_at"]},
            "last_activity_at": last_message["created_at"]})
        await stores.conversations.set_reads(conv.cid, {m: (last // (i + 2), len(messages) // (i + 2))
                                                        for i, m in enumerate(conv.members)})
    for mid, record in history.media.items():
        await stores.media.create(dict(record))
        s3.put_object(bucket, record["key"], io.BytesIO(b"x" * record["size"]), record["size"],
                      content_type=record["content_type"])
        for conv in history.conversations.values():
            if any(mid in (e.get("attachments") or ()) for e in conv.events):
                await stores.media.attach(mid, record["owner_id"], conv.cid)
    with MongoClient(mongo_uri) as client:       # no API sets a policy yet: operators set the field
        for cid, days in POLICIES.items():
            client[db_name]["conversations"].update_one({"_id": cid}, {"$set": {"retention_days": days}})
