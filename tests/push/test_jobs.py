"""The pure push rules: what a job carries, what a push says, who gets one, what a burst collapses to."""

from __future__ import annotations

from push.jobs import (E2EE_TITLE, for_recipients, message_job, notification_for, offline, plan, preview,
                       skipped_online)
from push.ports import Target


def ev(seq, sender="alice", body="hello", kind="message", **more):
    return {"conversation_id": "c1", "seq": seq, "kind": kind, "sender_id": sender, "body": body, **more}


MEMBERS = ["alice", "bob", "carol"]


def test_a_job_carries_a_preview_of_each_message_of_the_batch_and_all_members():
    job = message_job("c1", [ev(4, body="x" * 300), ev(5, "bob", "yo")], MEMBERS, e2ee=False, title="Team")
    assert job["id"] == "c1:4" and job["members"] == MEMBERS and job["title"] == "Team"
    assert [m["seq"] for m in job["messages"]] == [4, 5]
    assert len(job["messages"][0]["preview"]) == 100 and job["messages"][0]["preview"].endswith("…")


def test_only_message_events_count():
    job = message_job("c1", [ev(4, kind="edit"), ev(5)], MEMBERS, e2ee=False, title=None)
    assert [m["seq"] for m in job["messages"]] == [5]


def test_an_e2ee_job_carries_no_text_at_all():
    job = message_job("c1", [ev(4, body="c2VjcmV0")], MEMBERS, e2ee=True, title="Secret plans")
    assert job["title"] is None and job["messages"][0]["preview"] is None
    assert "c2VjcmV0" not in repr(job) and "Secret" not in repr(job)


def test_an_e2ee_push_says_only_new_message():
    job = message_job("c1", [ev(4)], MEMBERS, e2ee=True, title=None)
    n = notification_for(job, job["messages"][0], "Alice")
    assert (n.title, n.body, n.sender_id) == (E2EE_TITLE, None, None)
    assert (n.conversation_id, n.seq) == ("c1", 4)


def test_a_plain_push_names_the_sender_and_the_group():
    job = message_job("c1", [ev(4, body="lunch?")], MEMBERS, e2ee=False, title="Team")
    n = notification_for(job, job["messages"][0], "Alice")
    assert (n.title, n.body, n.sender_id) == ("Alice in Team", "lunch?", "alice")
    direct = message_job("c1", [ev(4, body="lunch?")], MEMBERS[:2], e2ee=False, title=None)
    assert notification_for(direct, direct["messages"][0], None).title == "Someone"


def test_an_attachment_without_text_still_says_something():
    job = message_job("c1", [ev(4, body="", attachments=["m1"])], MEMBERS, e2ee=False, title=None)
    assert notification_for(job, job["messages"][0], "Alice").body == "sent an attachment"


def test_previews_fold_whitespace_and_cut_at_the_limit():
    assert preview("  a\n\n b\tc ") == "a b c"
    assert preview("word " * 50, limit=12) == "word word w…"
    assert len(preview("x" * 500)) == 100
    assert preview(None) == ""


def test_online_members_are_skipped():
    presence = {"bob": {"status": "online"}, "carol": {"status": "offline"}}
    assert offline(["bob", "carol", "dave"], presence) == ["carol", "dave"]


def t(device, user, platform="fcm"):
    return Target(device, user, platform, f"tok-{device}")


def test_every_device_of_every_offline_member_but_the_sender_gets_the_message():
    job = message_job("c1", [ev(4)], MEMBERS, e2ee=False, title=None)
    targets = [t("d1", "bob"), t("d2", "bob", "apns"), t("d3", "carol"), t("d4", "alice")]
    pairs = plan(job, ["bob", "carol", "alice"], targets, collapse=True)
    assert [(m["seq"], x.device_id) for m, x in pairs] == [(4, "d1"), (4, "d2"), (4, "d3")]


def test_a_burst_collapses_to_the_first_message_per_device():
    job = message_job("c1", [ev(4), ev(5), ev(6, "bob")], MEMBERS, e2ee=False, title=None)
    targets = [t("d1", "bob"), t("d3", "carol"), t("d4", "alice")]
    pairs = plan(job, MEMBERS, targets, collapse=True)
    # bob's device: message 4 (5 collapses; 6 is his own); carol: 4; alice: 6 (bob wrote it).
    assert [(m["seq"], x.device_id) for m, x in pairs] == [(4, "d1"), (4, "d3"), (6, "d4")]


def test_without_collapsing_every_message_goes_to_every_device():
    job = message_job("c1", [ev(4), ev(5)], MEMBERS, e2ee=False, title=None)
    pairs = plan(job, ["bob"], [t("d1", "bob")], collapse=False)
    assert [(m["seq"], x.device_id) for m, x in pairs] == [(4, "d1"), (5, "d1")]


def test_devices_of_online_members_are_not_planned():
    job = message_job("c1", [ev(4)], MEMBERS, e2ee=False, title=None)
    assert plan(job, ["carol"], [t("d1", "bob"), t("d3", "carol")], collapse=True)[0][1].device_id == "d3"


def test_a_job_for_some_recipients_keeps_everything_but_the_members():
    job = message_job("c1", [ev(4, body="lunch?")], MEMBERS, e2ee=False, title="Team")
    mine = for_recipients(job, ["bob"])
    assert mine == {**job, "members": ["bob"]} and job["members"] == list(MEMBERS)


def test_skipped_online_counts_the_online_recipients_but_not_a_lone_sender():
    job = message_job("c1", [ev(4, "alice")], MEMBERS, e2ee=False, title=None)
    assert skipped_online(job, ["alice", "bob", "carol"], away=["carol"]) == 1
    both = message_job("c1", [ev(4, "alice"), ev(5, "bob")], MEMBERS, e2ee=False, title=None)
    assert skipped_online(both, ["alice", "bob", "carol"], away=["carol"]) == 2
