"""A job submitted through Ray's Jobs API, as ``ray job submit --working-dir .`` does, and run as a
plain ``python -m`` process with its own local Ray: both ways the README gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = str(Path(__file__).resolve().parents[2])


def report(output: str, job: str) -> dict:
    """The job's report: its one JSON line on stdout, among Ray's own log lines."""
    lines = [line for line in output.splitlines() if line.startswith("{") and f'"job": "{job}"' in line]
    assert lines, output[-3000:]
    return json.loads(lines[-1])


@pytest.mark.e2e
def test_backup_runs_through_ray_job_submit(job_env, tmp_path):
    out = tmp_path / "backup"
    proc = subprocess.run([sys.executable, "-m", "tests.jobs.submit_driver", "240", REPO, "jobs.backup",
                           "--out", str(out)], cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
                          timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report(proc.stdout, "backup")["collections"]["events"] == len(job_env.history.all_events())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["collections"]["events"]["count"] == len(job_env.history.all_events())
    lines = [line for f in sorted((out / "events").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) == len(job_env.history.all_events())


@pytest.mark.e2e
def test_export_runs_as_a_plain_process_with_a_local_ray(job_env, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jobs.export_user", "--address", "local", "--user-id", "u_erin",
                           "--out", str(tmp_path)], cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = report(proc.stdout, "export_user")["counts"]
    erin = [e for e in job_env.history.all_events() if e["sender_id"] == "u_erin" and e["kind"] == "message"]
    assert counts == {"profile": 1, "messages": len(erin), "conversations": 2, "media": 0}
    assert json.loads((tmp_path / "u_erin" / "manifest.json").read_text())["counts"] == counts
    lines = [x for f in (tmp_path / "u_erin" / "messages").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert sorted(json.loads(x)["seq"] for x in lines if json.loads(x)["conversation_id"] == "c_lag") == \
        [e["seq"] for e in erin if e["conversation_id"] == "c_lag"]
    assert len(lines) == len(erin)
