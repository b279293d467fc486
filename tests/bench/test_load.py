"""bench/load.py drives a target and reports what the benchmark table is built from.

Behaviour, not speed: a few sockets for about two seconds each, against the plain websockets
peer (a real process) and against the session raychat app. Every step must report its fields,
and nothing may be lost or duplicated, including, on raychat, across a reconnect storm (the
cut sockets resume with ``hello.since``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.load import main_async, parse_args
from storage.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--users", "20", "--rates", "100", "--warmup", "0.3", "--window", "1.5", "--drain", "10"]


def check_step(step: dict, *, ack: bool) -> None:
    for field in ("offered_deliveries_per_s", "deliveries_per_s", "messages_sent", "delivery_ms", "ack_ms", "lost",
                  "duplicates", "refused", "unanswered", "drain", "send_lag_ms", "server_cores", "client_cores",
                  "passed"):
        assert field in step, field
    assert step["messages_sent"] > 0
    assert step["delivery_ms"]["n"] > 0 and step["delivery_ms"]["p50"] <= step["delivery_ms"]["p99"]
    assert step["lost"] == 0 and step["duplicates"] == 0 and step["unanswered"] == 0 and not step["refused"]
    assert step["drain"]["end"] == "complete"
    if ack:
        assert step["ack_ms"]["n"] > 0
    else:
        assert step["ack_ms"] == "n/a"


@pytest.fixture
def websockets_peer():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.peers.websockets_server", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    import socket
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the websockets peer did not start")
            time.sleep(0.1)
    yield proc, f"ws://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


async def test_group_step_against_the_websockets_peer(websockets_peer):
    proc, url = websockets_peer
    report = await main_async(parse_args(["--target", "websockets", "--url", url, "--scenario", "group10",
                                          "--server-pid", str(proc.pid), *SMALL]))
    r = report["scenarios"]["group10"]
    assert r["connect"]["opened"] == 20 and r["conversations"] == 2
    check_step(r["steps"][0], ack=False)
    assert r["server_rss"]["max_mb"] > 0
    assert r["best"] is None or r["best"]["deliveries_per_s"] == r["steps"][0]["deliveries_per_s"]


@pytest.mark.e2e
async def test_group_step_and_storm_against_raychat(raychat):
    s = raychat.settings
    report = await main_async(parse_args(["--target", "raychat", "--url", raychat.base_url,
                                          "--scenario", "group10,storm", "--mongodb-uri", s.mongodb_uri,
                                          "--mongodb-db", s.mongodb_db, "--jwt-secret", s.jwt_secret,
                                          "--server-pid", str(os.getpid()), *SMALL]))
    group = report["scenarios"]["group10"]
    check_step(group["steps"][0], ack=True)
    storm = report["scenarios"]["storm"]
    info = storm["storm"]
    assert info["sockets_cut"] == 2 and info["reconnected"] == 2
    assert info["lost_on_cut_sockets"] == 0 and info["lost_on_other_sockets"] == 0 and info["duplicates"] == 0
    check_step(storm["steps"][0], ack=True)


async def test_connecting_stops_trying_once_enough_handshakes_failed():
    """idle10k against a front door that stopped accepting: the failures end the step in one
    timeout's time, the sockets not tried are counted as such."""
    from bench.load_run import Runner
    from bench.load_wire import Member

    class Refusing:
        name = "refusing"
        tries = 0

        async def open(self, member, since=None):
            Refusing.tries += 1
            raise ConnectionRefusedError("full")

    runner = Runner(Refusing(), run_id="t")
    members = [Member(i, f"u{i}", "t", []) for i in range(50)]
    out = await runner.connect(members, per_member=2, concurrency=4, give_up_after=10)
    assert out["opened"] == 0 and out["requested"] == 100
    assert 10 <= Refusing.tries <= 10 + 4          # those in flight when the tenth failed still ran
    assert out["failed"]["not tried: 10 handshakes had failed"] == 100 - Refusing.tries
