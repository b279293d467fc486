"""The retention rules alone (jobs/retention_rules.py): no Ray, no database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobs.retention_rules import BadPolicy, emptied, plan, retention_days, unreferenced

NOW = datetime(2027, 1, 15, 8, tzinfo=timezone.utc)


def ev(seq: int, days_ago: float, kind: str = "message", cid: str = "c1", attachments=()) -> dict:
    return {"conversation_id": cid, "seq": seq, "kind": kind, "created_at": NOW - timedelta(days=days_ago),
            "attachments": list(attachments)}


@pytest.mark.parametrize("doc, default, days", [
    ({"retention_days": 7}, None, 7),
    ({"retention_days": 7}, 30, 7),             # the conversation's own policy wins
    ({}, 30, 30),
    ({"retention_days": None}, 30, 30),
    ({}, None, None),                           # no policy anywhere: keep forever
])
def test_policy_comes_from_the_conversation_then_the_default(doc, default, days):
    assert retention_days(doc, default) == days


@pytest.mark.parametrize("value", [0, -1, "30", 1.5, True, [7]])
def test_a_broken_policy_is_refused_not_guessed(value):
    with pytest.raises(BadPolicy):
        retention_days({"retention_days": value}, 30)


def test_old_events_expire_but_never_the_newest():
    newest = ev(10, 5)
    p = plan("c1", 2, NOW, state_seq=10, newest=newest)
    assert p.upto_seq == 9 and p.empty_newest
    assert p.deletes(ev(9, 5)) and not p.deletes(newest) and p.expires(newest)
    assert not p.deletes(ev(8, 1))              # younger than the policy


def test_nothing_past_the_checkpoint_is_touched():
    p = plan("c1", 1, NOW, state_seq=5, newest=ev(10, 3))
    assert p.upto_seq == 5 and not p.empty_newest
    assert p.deletes(ev(5, 3)) and not p.deletes(ev(6, 3))


def test_membership_events_are_kept():
    p = plan("c1", 1, NOW, state_seq=10, newest=ev(10, 3, kind="member_added"))
    assert not p.empty_newest
    assert not p.deletes(ev(4, 3, kind="member_removed")) and p.deletes(ev(4, 3, kind="reaction"))


def test_the_cutoff_is_exact_to_the_millisecond():
    p = plan("c1", 2, NOW, state_seq=10, newest=ev(10, 0))
    boundary = NOW - timedelta(days=2)
    assert not p.deletes({**ev(3, 0), "created_at": boundary})
    assert p.deletes({**ev(3, 0), "created_at": boundary - timedelta(milliseconds=1)})


def test_a_conversation_without_events_has_no_plan():
    assert plan("c1", 1, NOW, state_seq=0, newest=None) is None


def test_delete_filter_matches_deletes():
    p = plan("c1", 2, NOW, state_seq=20, newest=ev(20, 0))
    f = p.delete_filter(5, 10)
    assert f["conversation_id"] == "c1" and f["seq"] == {"$gt": 5, "$lte": 10}
    assert f["created_at"] == {"$lt": NOW - timedelta(days=2)}
    assert sorted(f["kind"]["$nin"]) == ["member_added", "member_removed"]
    assert p.delete_filter(0, 99)["seq"]["$lte"] == 19          # never past upto_seq


def test_an_emptied_message_reads_as_deleted():
    message = plan("c1", 1, NOW, state_seq=3, newest=ev(3, 2))
    edit = plan("c1", 1, NOW, state_seq=3, newest=ev(3, 2, kind="edit"))
    assert emptied(message) == {"$unset": {"body": "", "attachments": "", "reactions": "", "terms": ""},
                                "$set": {"deleted": True}}
    assert "$set" not in emptied(edit) and "body" in emptied(edit)["$unset"]


def test_media_stays_while_any_surviving_event_attaches_it():
    plans = {"c1": plan("c1", 2, NOW, state_seq=10, newest=ev(10, 0))}
    refs = [ev(1, 5, attachments=["m1", "m2"]),            # expires
            ev(9, 0, attachments=["m2"]),                  # young: survives
            ev(3, 5, cid="c2", attachments=["m3"]),        # a conversation without a plan
            ev(4, 5, attachments=["m4"])]
    assert unreferenced(["m1", "m2", "m3", "m4", "m5"], refs, plans) == {"m1", "m4", "m5"}
