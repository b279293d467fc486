"""jobs.export_user: exactly one user's data, read back from the JSON lines it wrote to S3."""

from __future__ import annotations

import io
import json

import pytest
from pymongo import MongoClient

from actors.events import dumps, event_to_wire
from jobs import export_user


def exported(job_env, prefix: str) -> dict[str, list[str]]:
    """Every line under ``prefix`` in the output bucket, by the directory it is in."""
    out: dict[str, list[str]] = {}
    for obj in job_env.s3.list_objects(job_env.out_bucket, prefix=prefix, recursive=True):
        text = job_env.s3.get_object(job_env.out_bucket, obj.object_name).read().decode()
        part = obj.object_name[len(prefix):].split("/")[0]
        out.setdefault(part, []).extend(line for line in text.splitlines() if line)
    return out


@pytest.mark.e2e
def test_export_holds_exactly_the_users_data(jobs_ray, job_env, capsys):
    assert export_user.main(["--user-id", "u_alice", "--out", f"s3://{job_env.out_bucket}/exports"]) == 0
    files = exported(job_env, "exports/u_alice/")
    with MongoClient(job_env.mongo_uri, tz_aware=True) as client:
        db = client[job_env.db]
        theirs = list(db["events"].find({"sender_id": "u_alice", "kind": "message"}, {"_id": 0}))
        others = list(db["events"].find({"sender_id": {"$ne": "u_alice"}}, {"_id": 0}))

    # Messages: all of alice's, as the history page shows them, and nobody else's.
    assert sorted(files["messages"]) == sorted(dumps(event_to_wire(ev)) for ev in theirs)
    messages = [json.loads(line) for line in files["messages"]]
    assert {m["sender_id"] for m in messages} == {"u_alice"} and len(messages) == len(theirs) > 50
    assert any(m.get("deleted") and "body" not in m for m in messages)        # the owner deleted some
    assert any(m.get("edited_at") and m["body"].startswith("edited by u_alice") for m in messages)
    assert all(m["created_at"].endswith("Z") for m in messages)

    conversations = {c["conversation_id"]: c for c in map(json.loads, files["conversations"])}
    assert set(conversations) == {"c_team", "c_direct", "c_media", "c_quiet", "c_broken"}     # not c_lag
    for c in conversations.values():
        assert "u_alice" in c["members"] and c["read"] is not None
        assert not {"reads", "last_message", "direct_key", "state_seq"} & set(c)
    media = {m["media_id"]: m for m in map(json.loads, files["media"])}
    assert set(media) == {"m1", "m2", "m3", "m4", "m5"}                         # m6 is dave's
    assert media["m3"]["key"] == "u_alice/m3" and sorted(media["m3"]["conversations"]) == ["c_direct", "c_media"]
    (profile,) = map(json.loads, files["profile"])
    assert profile == {"user_id": "u_alice", "username": "alice", "display_name": "Alice",
                       "created_at": profile["created_at"]}

    # Nothing of anyone else: no other member's cursor, no password hash, no other sender's text.
    everything = "\n".join(line for lines in files.values() for line in lines)
    assert "argon2-of" not in everything
    for ev in others:
        if ev.get("body"):
            assert f'"body":{dumps(ev["body"])}' not in everything
    manifest = json.loads(job_env.s3.get_object(job_env.out_bucket, "exports/u_alice/manifest.json").read())
    assert manifest["counts"] == {"messages": len(theirs), "conversations": 5, "media": 5, "profile": 1}

    # A second export replaces the first: nothing left over, nothing twice.
    job_env.s3.put_object(job_env.out_bucket, "exports/u_alice/messages/part-99999.jsonl", io.BytesIO(b"{}\n"), 3)
    assert export_user.main(["--user-id", "u_alice", "--out", f"s3://{job_env.out_bucket}/exports"]) == 0
    assert {k: sorted(v) for k, v in exported(job_env, "exports/u_alice/").items()} == \
        {k: sorted(v) for k, v in files.items()}


@pytest.mark.e2e
def test_an_unknown_user_is_refused_and_nothing_written(jobs_ray, job_env, capsys):
    assert export_user.main(["--user-id", "u_nobody", "--out", f"s3://{job_env.out_bucket}/exports"]) == 1
    assert "no such user" in capsys.readouterr().err
    assert list(job_env.s3.list_objects(job_env.out_bucket, recursive=True)) == []


@pytest.mark.parametrize("argv", [["--out", "s3://b/p"], ["--user-id", "../etc", "--out", "s3://b/p"],
                                  ["--user-id", "u_a/b", "--out", "s3://b/p"], ["--user-id", "u_a"]])
def test_bad_arguments_are_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        export_user.main(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err
