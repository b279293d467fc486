"""100 concurrent sends of one client_msg_id over two sockets of the same user.

Same content: one event is stored and every one of the 100 sends is acked with its seq.
Different content (one body per socket): one event is stored, the sends with its body are
acked with its seq, and every send with the other body gets ``conflict`` (docs/protocol.md,
"Errors"). Either way no socket sees the event twice, and the next send gets the next seq.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from tests.chat_client import Socket, create_group, register
from tests.faults.harness import FIRST_ACK_BOUND_S, REPORTS

pytestmark = pytest.mark.e2e

N = 100
RETRYABLE = {"unavailable", "rate_limited", "internal"}


def answers(sock: Socket, cmid: str) -> list[dict]:
    return [f for f in sock.frames
            if (f["type"] == "ack" and f.get("client_msg_id") == cmid) or (f["type"] == "error" and f.get("ref") == cmid)]


async def storm(sock: Socket, cid: str, cmid: str, body: str, n: int) -> tuple[list[dict], int]:
    """Send ``n`` frames at once, then again for each retryable answer, until ``n`` final answers."""
    frame = json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "body": body})
    await asyncio.gather(*(sock.ws.send(frame) for _ in range(n)))
    retried = seen = 0
    while True:
        got = answers(sock, cmid)
        for f in got[seen:]:
            if f["type"] == "error" and f["code"] in RETRYABLE:
                retried += 1
                await sock.ws.send(frame)
        seen = len(got)
        final = [f for f in got if not (f["type"] == "error" and f["code"] in RETRYABLE)]
        if len(final) >= n:
            return final, retried
        await sock.wait_for(lambda: len(answers(sock, cmid)) > seen, timeout=60)


@pytest.mark.parametrize("same_content", [True, False], ids=["same-content", "different-content"])
async def test_a_storm_of_one_client_msg_id_stores_one_event(raychat, http, same_content):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    s1, s2, watcher = (await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, a),
                       await Socket.open(raychat.ws_url, b))
    cmid = uuid.uuid4().hex
    body1, body2 = "storm", ("storm" if same_content else "another storm")
    (final1, r1), (final2, r2) = await asyncio.gather(storm(s1, cid, cmid, body1, N // 2),
                                                      storm(s2, cid, cmid, body2, N // 2))
    ended = time.monotonic()

    r = await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)
    stored = [e for e in r.json()["events"] if e.get("client_msg_id") == cmid]
    assert len(stored) == 1, f"{len(stored)} events stored for one client_msg_id"
    seq, winner = stored[0]["seq"], stored[0]["body"]
    assert seq == 1
    for final, body in ((final1, body1), (final2, body2)):
        if body == winner:
            assert all(f["type"] == "ack" and f["seq"] == seq for f in final), \
                f"a send of the stored content was not acked with seq {seq}: {[f for f in final if f.get('seq') != seq][:3]}"
        else:
            assert all(f["type"] == "error" and f["code"] == "conflict" for f in final), \
                f"a send of other content was not refused with conflict: {final[:3]}"
    if not same_content:
        assert {f["type"] for f in final1 + final2} == {"ack", "error"}

    # Nobody sees it twice: live delivery never repeats an event on one socket.
    for sock in (s1, s2, watcher):
        await sock.wait_for(lambda sock=sock: cid in sock.events)
    await asyncio.sleep(0.5)
    repeats = sum(len(s.events[cid]) - len(set(s.events[cid])) for s in (s1, s2, watcher))
    assert all(s.events[cid] == [seq] for s in (s1, s2, watcher)), {id(s): s.events[cid] for s in (s1, s2, watcher)}

    after = await s1.send(cid, "after the storm")
    await s1.wait_for(lambda: after in s1.acks, timeout=30)
    first_ack_s = time.monotonic() - ended
    assert s1.acks[after]["seq"] == seq + 1
    acked = sum(f["type"] == "ack" for f in final1 + final2)
    line = (f"fault=duplicate-storm-{'same' if same_content else 'different'} sent={N} acked={acked} "
            f"retried={r1 + r2} lost=0 duplicates={len(stored) - 1 + repeats} "
            f"first_ack_after_clear={first_ack_s:.2f}s conflicts={N - acked}")
    REPORTS.append(line)
    print(line)
    assert first_ack_s <= FIRST_ACK_BOUND_S
    for s in (s1, s2, watcher):
        await s.close()
