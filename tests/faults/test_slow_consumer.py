"""A slow consumer: one client stops reading its socket while the others chat.

The others must not notice; the slow one, once its socket is gone, reconnects and resumes
gap-free. The gateway closes such a socket with 1013 once ``socket_queue_max`` frames wait for
it (gateway/conn.py ``SlowConsumer``), which is only after every buffer on the way is full: the
last test floods past them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
import websockets

from tests.chat_client import Socket, create_group, register
from tests.faults.harness import Target, run_fault
from tests.fixtures_faults import FAULTS_SOCKET_QUEUE_MAX

pytestmark = pytest.mark.e2e

STALL_S = 8.0
BODY = 12_000


def _tcp_max(name: str, default: int) -> int:
    """The kernel's cap on one socket's buffer (the third field of net.ipv4.tcp_rmem/tcp_wmem)."""
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return default


def flood_frames(queue_max: int) -> int:
    """Frames of BODY bytes that outgrow everything between the gateway and a client that reads
    nothing: the gateway's queue, the replica's send buffer, the front door's receive and send
    buffers and the client's (64 KiB, set below); each kernel buffer may autotune up to its cap."""
    buffered = 2 * _tcp_max("tcp_wmem", 4 << 20) + _tcp_max("tcp_rmem", 6 << 20) + (64 << 10)
    return queue_max + int(1.25 * buffered / BODY) + 100
OTHERS_BOUND_S = 5.0      # an unaffected client's send waits no longer than this during the stall


async def test_a_client_that_stops_reading_slows_nobody_and_resumes_gap_free(faulty, scale):
    async def stall(h):
        slow = h.clients[0]
        h.affected = {slow.index}
        ws = slow.conn.websocket
        had = len(slow.received)
        h.began()
        # The client stops reading: its kernel buffer fills, then the server's side of the socket.
        ws.transport.pause_reading()
        await asyncio.sleep(STALL_S)
        stalled = len(slow.received) - had
        # Its socket ends, as the server's 1013 (or, at worst, the proxy's keepalive) would end it.
        ws.transport.abort()
        h.cleared()
        # Frames parsed before the pause may still come out of the library's queue (at most 16).
        assert stalled <= 16, f"the stalled client still got {stalled} events: it never stopped reading"

    report = await run_fault(Target(faulty.base_url), scale, "slow-consumer", stall)
    assert report.ok, report.explain()
    worst = max(c.others_worst_ack_s or 0.0 for c in report.cycles)
    assert worst <= OTHERS_BOUND_S, f"a send of another client waited {worst:.1f} s while one client stalled"


async def test_the_server_closes_a_socket_that_stops_reading_with_1013(faulty):
    async with httpx.AsyncClient(base_url=faulty.base_url, timeout=30) as http:
        a, b = await register(http), await register(http)
        cid = await create_group(http, a, [b])
    # b reads nothing after its welcome: websockets stops reading the socket once 4 frames wait.
    # No compression (a body of one repeated letter would shrink to a few bytes per frame and
    # fill no buffer) and a small receive buffer, so the stall reaches the server soon.
    url = urllib.parse.urlsplit(faulty.ws_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.connect((url.hostname, url.port))
    sock.setblocking(False)
    ws = await websockets.connect(faulty.ws_url + "/v1/ws", max_size=2**22, max_queue=4, sock=sock,
                                  compression=None)
    await ws.send(json.dumps({"type": "hello", "token": b.token}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "welcome"
    sa = await Socket.open(faulty.ws_url, a)
    n, body = flood_frames(FAULTS_SOCKET_QUEUE_MAX), "x" * BODY
    t0 = time.monotonic()
    for i in range(n):
        await sa.send(cid, body, cmid=f"flood-{i}")
        if i % 50 == 49:
            # The sender's own socket gets every event and ack too: keep fewer than its queue's
            # worth in flight, so only b is the slow consumer here.
            await sa.wait_for(lambda i=i: len(sa.acks) >= i - 30, timeout=60)
    await sa.wait_for(lambda: len(sa.acks) == n, timeout=300)
    flooded_s = time.monotonic() - t0
    await sa.close()
    got, code = 0, None
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
            got += frame["type"] == "event"
    except websockets.ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
    except asyncio.TimeoutError:
        await ws.close()
    assert code == 1013 and got < n, (f"{n} events of 12 kB in {flooded_s:.1f} s to a socket that read nothing: "
                                      f"it got {got} of them afterwards and close code {code}, not 1013")
