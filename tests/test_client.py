"""The SDK's pure parts: event ordering, dedupe and gaps; backoff; what a close code means; the
error body; and that the module can be copied out alone (no Ray, no server packages)."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from raychat import client as sdk
from raychat.client import ApiError, Backoff, EventOrder, Gap, close_action

ROOT = Path(__file__).resolve().parents[1]


def ev(seq: int, cid: str = "c1", kind: str = "message", **extra) -> dict:
    return {"conversation_id": cid, "seq": seq, "kind": kind, "sender_id": "u1", **extra}


def seqs(events: list[dict]) -> list[int]:
    return [e["seq"] for e in events]


# ---- EventOrder ---------------------------------------------------------------------------------

def test_events_in_order_pass_straight_through():
    order = EventOrder({"c1": 0})
    out = []
    for s in (1, 2, 3):
        ready, gap = order.accept(ev(s))
        assert gap is None
        out += ready
    assert seqs(out) == [1, 2, 3]
    assert order.since() == {"c1": 3}


def test_repeats_are_dropped_whether_old_or_already_held():
    order = EventOrder({"c1": 0})
    order.accept(ev(1))
    order.accept(ev(3))                                 # held behind a gap
    assert order.accept(ev(1)) == ([], None)            # already handed out
    assert order.accept(ev(3)) == ([], None)            # already held
    assert order.repeats == 2


def test_a_gap_holds_later_events_back_and_is_reported_once():
    order = EventOrder({"c1": 2})
    ready, gap = order.accept(ev(5))
    assert ready == [] and gap == Gap("c1", 2, 4)
    ready, gap = order.accept(ev(6))
    assert ready == [] and gap is None, "the same gap is being filled: not asked for twice"
    ready, gap = order.filled("c1", [ev(3), ev(4)], 4)
    assert seqs(ready) == [3, 4, 5, 6] and gap is None
    assert order.since() == {"c1": 6}


def test_a_gap_closed_by_the_socket_before_the_fill_answers_is_not_repeated():
    order = EventOrder({"c1": 0})
    order.accept(ev(3))
    ready, _ = order.accept(ev(1))
    assert seqs(ready) == [1]
    ready, _ = order.accept(ev(2))
    assert seqs(ready) == [2, 3]
    ready, gap = order.filled("c1", [ev(1), ev(2)], 2)
    assert ready == [] and gap is None


def test_what_the_store_does_not_give_within_a_gap_is_skipped():
    """A member re-added after a removal may not see what happened while out: the feed then
    lacks those seqs, and waiting for them would stall the conversation for good."""
    order = EventOrder({"c1": 1})
    order.accept(ev(6))
    ready, gap = order.filled("c1", [ev(5)], 5)
    assert seqs(ready) == [5, 6] and gap is None
    assert order.since() == {"c1": 6}


def test_a_second_gap_beyond_the_first_is_reported_after_the_fill():
    order = EventOrder({"c1": 0})
    _, gap = order.accept(ev(3))
    assert gap == Gap("c1", 0, 2)
    order.accept(ev(6))
    ready, gap = order.filled("c1", [ev(1), ev(2)], 2)
    assert seqs(ready) == [1, 2, 3]
    assert gap == Gap("c1", 3, 5)


def test_a_failed_fill_is_asked_for_again_by_the_next_event():
    order = EventOrder({"c1": 0})
    _, gap = order.accept(ev(3))
    order.fill_failed("c1")
    _, gap = order.accept(ev(4))
    assert gap == Gap("c1", 0, 2)


def test_a_conversation_seen_first_starts_at_its_first_event():
    order = EventOrder()
    ready, gap = order.accept(ev(41, cid="new"))
    assert seqs(ready) == [41] and gap is None


def test_conversations_are_ordered_independently():
    order = EventOrder({"a": 0, "b": 0})
    assert order.accept(ev(2, cid="a"))[1] == Gap("a", 0, 1)
    ready, gap = order.accept(ev(1, cid="b"))
    assert seqs(ready) == [1] and gap is None


def test_track_moves_the_cursor_forward_only_and_releases_what_was_waiting():
    order = EventOrder({"c1": 5})
    assert order.track("c1", 3) == ([], None) and order.since() == {"c1": 5}
    order.accept(ev(8))
    order.accept(ev(11))
    ready, gap = order.track("c1", 7)
    assert seqs(ready) == [8] and gap is None, "the gap 6-7 was being filled; 9-10 is still"
    assert order.track("new", 0) == ([], None) and order.since()["new"] == 0


def test_own_removal_ends_tracking_and_drops_what_follows():
    order = EventOrder({"c1": 0}, user_id="me")
    order.accept(ev(3))
    order.accept(ev(2, kind="member_removed", user_ids=["me"]))
    ready, _ = order.accept(ev(1))
    assert seqs(ready) == [1, 2]
    assert "c1" not in order.since()
    # Added back later: the conversation starts again at the member_added event.
    ready, _ = order.accept(ev(9, kind="member_added", user_ids=["me"]))
    assert seqs(ready) == [9]


def test_someone_elses_removal_is_just_an_event():
    order = EventOrder({"c1": 0}, user_id="me")
    ready, _ = order.accept(ev(1, kind="member_removed", user_ids=["other"]))
    assert seqs(ready) == [1] and order.since() == {"c1": 1}


def test_forget_drops_held_events_and_a_late_fill():
    order = EventOrder({"c1": 0})
    order.accept(ev(4))
    order.forget("c1")
    assert order.filled("c1", [ev(1), ev(2), ev(3)], 3) == ([], None)
    assert order.since() == {}


def test_shuffled_duplicated_stream_comes_out_exactly_once_in_order():
    rng = random.Random(7)
    stream = [ev(s) for s in range(1, 201)] * 2
    rng.shuffle(stream)
    order = EventOrder({"c1": 0})
    out, gaps = [], []
    for e in stream:
        ready, gap = order.accept(e)
        out += ready
        if gap:
            gaps.append(gap)
            # Answer some fills at once with the store's events; the socket closes the rest.
            if rng.random() < 0.5:
                more, again = order.filled("c1", [ev(s) for s in range(gap.after_seq + 1, gap.upto_seq + 1)],
                                           gap.upto_seq)
                out += more
                if again:
                    gaps.append(again)
            else:
                order.fill_failed("c1")
    assert seqs(out) == list(range(1, 201))
    assert gaps, "the shuffle made gaps"


# ---- backoff and close codes -------------------------------------------------------------------

def test_backoff_grows_exponentially_up_to_its_cap_with_bounded_jitter():
    b = Backoff(base_s=0.5, factor=2.0, max_s=8.0)
    rng = random.Random(1)
    for attempt, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        delays = [b.delay(attempt, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays), attempt
        assert max(delays) - min(delays) > step / 4, "jittered"


@pytest.mark.parametrize("code,reason,last_error,action", [
    (1006, "", None, "reconnect"),
    (1011, "internal error", None, "reconnect"),
    (1012, "", None, "reconnect"),
    (1013, "too slow a consumer: reconnect and resume", None, "reconnect"),
    (1001, "", None, "reconnect"),
    (1000, "", None, "reconnect"),
    (1008, "unauthorized: access token expired", "unauthorized", "refresh"),
    (1008, "unauthorized: token expired", None, "refresh"),
    (1008, "too many connections for this user", "rate_limited", "reconnect"),
    (1008, "too many invalid frames", "invalid", "fatal"),
    (1003, "binary frames are not accepted", None, "fatal"),
    (1007, "frames must be JSON", None, "fatal"),
    (1009, "frame over 65536 bytes", None, "fatal"),
])
def test_close_codes_map_to_what_a_client_does(code, reason, last_error, action):
    assert close_action(code, reason, last_error) == action


# ---- errors ----------------------------------------------------------------------------------------

def test_api_error_from_the_error_body():
    r = httpx.Response(429, json={"code": "rate_limited", "message": "slow down", "retry_after_ms": 1200})
    err = ApiError.from_response(r)
    assert (err.code, err.status, err.message, err.retry_after_ms) == ("rate_limited", 429, "slow down", 1200)


def test_api_error_from_a_body_that_is_not_ours_uses_the_status_and_retry_after_header():
    err = ApiError.from_response(httpx.Response(503, text="<html>bad gateway</html>", headers={"Retry-After": "2"}))
    assert (err.code, err.status, err.retry_after_ms) == ("unavailable", 503, 2000)
    assert ApiError.from_response(httpx.Response(400, text="nope")).code == "invalid"


def test_api_error_from_a_websocket_frame_gets_the_http_status_of_its_code():
    err = ApiError.from_frame({"type": "error", "code": "too_large", "message": "body: over 16384 bytes",
                               "ref": "k"})
    assert (err.code, err.status) == ("too_large", 413)


def test_ws_url_follows_the_base_url():
    assert sdk.Client("https://chat.example/strict/").ws_url == "wss://chat.example/strict/v1/ws"
    assert sdk.Client("http://127.0.0.1:8000").ws_url == "ws://127.0.0.1:8000/v1/ws"
    assert sdk.Client("http://x", ws_url="ws://y:1").ws_url == "ws://y:1/v1/ws"


# ---- the module stands alone ---------------------------------------------------------------------

def test_the_sdk_imports_only_the_standard_library_httpx_and_websockets():
    tree = ast.parse((ROOT / "raychat" / "client.py").read_text())
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import ties the file to this package"
            top.add(node.module.split(".")[0])
    assert top - set(sys.stdlib_module_names) - {"__future__"} == {"httpx", "websockets"}


def test_importing_the_sdk_loads_neither_ray_nor_the_server():
    code = ("import sys, json; from raychat.client import Client; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"ray", "gateway", "actors", "storage", "pydantic", "fastapi", "starlette", "pymongo"}
