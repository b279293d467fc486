"""jobs.retention on the generated history, checked against the store and the bucket afterwards."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from minio.error import S3Error
from pymongo import MongoClient

from gateway.chat_service import ChatService
from jobs import retention
from raychat.clock import FakeClock
from storage.mongo_conversations import merged
from tests.jobs.dataset import NOW, NOW_TS, POLICIES, History

MEMBERSHIP = ("member_added", "member_removed")


def expected_survivors(history: History, default_days: int | None = None) -> dict[str, list[int]]:
    """Per conversation, the seqs retention keeps, from the rules as the docs state them."""
    out = {}
    for cid, conv in history.conversations.items():
        days = POLICIES.get(cid, default_days)
        newest = conv.events[-1]["seq"]
        checkpoint = conv.state_seq if conv.state_seq is not None else newest
        out[cid] = [ev["seq"] for ev in conv.events
                    if not isinstance(days, int) or ev["created_at"] >= NOW - timedelta(days=days)
                    or ev["seq"] == newest or ev["seq"] > checkpoint or ev["kind"] in MEMBERSHIP]
    return out


def stored(job_env) -> dict[str, list[dict]]:
    with MongoClient(job_env.mongo_uri, tz_aware=True) as client:
        out: dict[str, list[dict]] = {}
        for ev in client[job_env.db]["events"].find({}, {"_id": 0}).sort([("conversation_id", 1), ("seq", 1)]):
            out.setdefault(ev["conversation_id"], []).append(ev)
        return out


def media_left(job_env) -> dict[str, bool]:
    """media_id -> (record exists, object exists), for every generated media."""
    with MongoClient(job_env.mongo_uri) as client:
        records = {d["_id"] for d in client[job_env.db]["media"].find({}, {"_id": 1})}
    out = {}
    for mid, record in job_env.history.media.items():
        try:
            job_env.s3.stat_object(job_env.media_bucket, record["key"])
            present = True
        except S3Error:
            present = False
        out[mid] = (mid in records, present)
    return out


async def visible_to(job_env, user_id: str, cid: str) -> list[int]:
    """What the gateway replays to a member's socket (ChatService.read_visible, the real code)."""
    stores = job_env.stores()
    try:
        events, _, _ = await ChatService.read_visible(SimpleNamespace(stores=stores), user_id, cid, 0, 10_000)
        return [e["seq"] for e in events]
    finally:
        await stores.close()


def summaries(job_env) -> dict[str, dict[str, dict]]:
    with MongoClient(job_env.mongo_uri) as client:
        return {name: {c["_id"]: c for c in client[job_env.db][name].find()}
                for name in ("conversations", "conversation_progress")}


def summary(docs: dict[str, dict[str, dict]], cid: str) -> dict | None:
    """The last message a reader sees: the two documents merged."""
    return merged(docs["conversations"][cid], docs["conversation_progress"].get(cid))["last_message"]


def run(capsys, *argv: str) -> dict:
    assert retention.main(list(argv), clock=FakeClock(NOW_TS)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.e2e
def test_retention_deletes_what_expired_and_keeps_what_the_rules_keep(jobs_ray, job_env, capsys):
    history = job_env.history
    before = stored(job_env)
    carol_before = asyncio.run(visible_to(job_env, "u_carol", "c_team"))
    survivors = expected_survivors(history)
    gone = sum(len(before[cid]) - len(keep) for cid, keep in survivors.items())

    assert summary(summaries(job_env), "c_quiet")["body"]       # before the run: there to expire
    dry = run(capsys, "--dry-run")
    assert stored(job_env) == before and all(r == (True, True) for r in media_left(job_env).values())
    assert (dry["events"], dry["media"], dry["emptied"], dry["bad_policies"]) == (gone, 2, 1, 1)

    report = run(capsys)
    assert (report["events"], report["media"], report["emptied"]) == (gone, 2, 1)
    after = stored(job_env)
    assert {cid: [e["seq"] for e in evs] for cid, evs in after.items()} == survivors
    # Untouched: no policy (c_direct), a broken one (c_broken), and every kept event but the emptied one.
    assert after["c_direct"] == before["c_direct"] and after["c_broken"] == before["c_broken"]
    kept = {(e["conversation_id"], e["seq"]): e for evs in before.values() for e in evs}
    quiet_newest = history.conversations["c_quiet"].events[-1]["seq"]
    for cid, evs in after.items():
        for e in evs:
            if (cid, e["seq"]) != ("c_quiet", quiet_newest):
                assert e == kept[(cid, e["seq"])]

    # The newest event is never deleted, so the next seq the actor takes (max stored + 1) is new.
    assert all(after[cid][-1]["seq"] == before[cid][-1]["seq"] for cid in before)
    # c_quiet's newest, an expired message, is emptied like a deleted message.
    newest = after["c_quiet"][-1]
    assert newest["deleted"] is True and not {"body", "attachments", "reactions"} & set(newest)
    assert (newest["sender_id"], newest["kind"]) == ("u_alice", "message")
    # c_lag: checkpoint at 5, so 6..10 wait for a later run even though they are old.
    assert [e["seq"] for e in after["c_lag"]] == [6, 7, 8, 9, 10]
    # Media: m1 (only on an expired message) and m5 (on the emptied one) go, record and object;
    # m2 and m3 are also on surviving messages (m3 in another conversation), m4 and m6 recent.
    assert media_left(job_env) == {"m1": (False, False), "m2": (True, True), "m3": (True, True),
                                   "m4": (True, True), "m5": (False, False), "m6": (True, True)}
    # Either document may hold a summary (storage/mongo_conversations.py): none is left of the
    # expired one, and the recent one is kept.
    summaries_after = summaries(job_env)
    for docs in summaries_after.values():
        assert (docs.get("c_quiet") or {}).get("last_message") is None       # its text expired
    assert summary(summaries_after, "c_team")["body"]                          # recent: kept

    # carol was removed on day 5 and added back on day 1: she still sees nothing of what
    # happened while she was out, and nothing that was deleted.
    carol_after = asyncio.run(visible_to(job_env, "u_carol", "c_team"))
    assert carol_after == [s for s in carol_before if s in survivors["c_team"]]
    assert 37 in survivors["c_team"]            # her removal, kept: it is what hides those events

    # Again, with a default: conversations without a policy expire too; those done already have
    # nothing more to give (the run deletes c_direct's old events only), and a broken policy
    # still protects its conversation.
    report = run(capsys, "--default-days", "2")
    direct = expected_survivors(history, default_days=2)["c_direct"]
    assert (report["events"], report["media"], report["emptied"]) == (len(before["c_direct"]) - len(direct), 0, 0)
    assert [e["seq"] for e in stored(job_env)["c_direct"]] == direct
    assert stored(job_env)["c_broken"] == before["c_broken"]
    assert media_left(job_env)["m3"] == (True, True)         # its recent c_direct message survives


@pytest.mark.parametrize("argv", [["--default-days", "0"], ["--default-days", "ten"], ["--days", "3"]])
def test_bad_arguments_are_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        retention.main(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err
