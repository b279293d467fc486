"""jobs.analytics on the generated history: numbers read back from the Parquet it wrote to S3."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
from pymongo import MongoClient

from jobs import analytics
from raychat.clock import FakeClock
from raychat.config import ConfigError
from tests.jobs.dataset import NOW, NOW_TS

def s3fs(moto_s3) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(access_key=moto_s3.access_key, secret_key=moto_s3.secret_key,
                             endpoint_override=moto_s3.endpoint, scheme="http", region="us-east-1")


def table(moto_s3, bucket: str, name: str) -> list[dict]:
    """A whole output table as a query engine sees it: Hive partitions, ``date`` from the path."""
    data = pads.dataset(f"{bucket}/daily/{name}", filesystem=s3fs(moto_s3), format="parquet",
                        partitioning="hive").to_table()
    return [{**row, "date": str(row["date"])} for row in data.to_pylist()]


def expected(events: list[dict], day) -> tuple[dict, dict]:
    todays = [e for e in events if e["created_at"].date() == day]
    per_conversation = Counter(e["conversation_id"] for e in todays if e["kind"] == "message")
    users = {u: {"events": n, "messages": sum(1 for e in todays if e["sender_id"] == u and e["kind"] == "message")}
             for u, n in Counter(e["sender_id"] for e in todays).items()}
    return dict(per_conversation), users


def run(capsys, *argv: str) -> dict:
    assert analytics.main(list(argv), clock=FakeClock(NOW_TS)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.e2e
def test_a_day_of_counts_and_its_rerun_replaces_only_that_day(jobs_ray, job_env, moto_s3, capsys):
    events = job_env.history.all_events()
    out = f"s3://{job_env.out_bucket}/daily"
    day2, day1 = (NOW - timedelta(days=2)).date(), (NOW - timedelta(days=1)).date()

    report = run(capsys, "--date", day2.isoformat(), "--out", out)
    run(capsys, "--out", out)                       # no --date: yesterday (UTC) by the clock
    per_conversation, users = expected(events, day2)
    assert report["dau"] == len(users) and report["messages"] == sum(per_conversation.values())

    rows = table(moto_s3, job_env.out_bucket, "messages_per_conversation")
    assert {(r["date"], r["conversation_id"]): r["messages"] for r in rows if r["date"] == str(day2)} == \
        {(str(day2), cid): n for cid, n in per_conversation.items()}
    active = table(moto_s3, job_env.out_bucket, "active_users")
    assert {r["user_id"]: {"events": r["events"], "messages": r["messages"]}
            for r in active if r["date"] == str(day2)} == users
    assert "u_carol" not in users            # removed on day 5, back on day 1: silent on day 2
    daily = {r["date"]: r for r in table(moto_s3, job_env.out_bucket, "daily_active_users")}
    assert set(daily) == {str(day2), str(day1)}
    assert daily[str(day2)] == {"dau": len(users), "messages": sum(per_conversation.values()),
                                "conversations": len(per_conversation), "date": str(day2)}

    # New events on day 2, and a re-run: that day's numbers change, nothing is counted twice,
    # and day 1 is as it was.
    day1_before = [r for r in table(moto_s3, job_env.out_bucket, "active_users") if r["date"] == str(day1)]
    late = [{"conversation_id": "c_new", "seq": i + 1, "kind": "message", "sender_id": "u_zed", "client_msg_id": None,
             "body": "late", "attachments": [], "reply_to": None,
             "created_at": NOW - timedelta(days=2) + timedelta(minutes=i)} for i in range(3)]
    with MongoClient(job_env.mongo_uri, tz_aware=True) as client:
        client[job_env.db]["events"].insert_many([dict(e) for e in late])
    run(capsys, "--date", day2.isoformat(), "--out", out)
    per_conversation, users = expected(events + late, day2)
    rows = [r for r in table(moto_s3, job_env.out_bucket, "messages_per_conversation") if r["date"] == str(day2)]
    assert sorted((r["conversation_id"], r["messages"]) for r in rows) == sorted(per_conversation.items())
    assert per_conversation["c_new"] == 3 and users["u_zed"] == {"events": 3, "messages": 3}
    active = [r for r in table(moto_s3, job_env.out_bucket, "active_users") if r["date"] == str(day2)]
    assert len(active) == len(users)
    assert [r for r in table(moto_s3, job_env.out_bucket, "active_users") if r["date"] == str(day1)] == day1_before


@pytest.mark.e2e
def test_a_day_without_events_has_a_dau_of_zero(jobs_ray, job_env, moto_s3, capsys):
    report = run(capsys, "--date", "2020-02-29", "--out", f"s3://{job_env.out_bucket}/daily")
    assert report["dau"] == report["messages"] == report["conversations"] == 0
    assert table(moto_s3, job_env.out_bucket, "daily_active_users") == \
        [{"dau": 0, "messages": 0, "conversations": 0, "date": "2020-02-29"}]


@pytest.mark.parametrize("argv, complaint", [
    (["--date", "2026-13-01", "--out", "s3://b/p"], "--date"),
    (["--date", "20261128", "--out", "s3://b/p"], "--date"),
    (["--date", "2026-11-28"], "--out"),
    (["--date", "2026-11-28", "--out", "gs://b/p"], "--out"),
    (["--date", "2026-11-28", "--out", "s3:///p"], "--out"),
])
def test_bad_arguments_are_a_usage_error(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_:
        analytics.main(argv)
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err


def test_without_a_database_uri_it_says_which_variable_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("RAYCHAT_MONGODB_URI", raising=False)
    with pytest.raises(ConfigError, match="RAYCHAT_MONGODB_URI"):
        analytics.main(["--out", str(tmp_path)])
