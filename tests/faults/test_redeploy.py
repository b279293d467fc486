"""Redeploy the gateway while clients chat: Serve replaces the replica and cuts its sockets
(close 1006, or 1012 from a proxy that says so); the SDK clients reconnect and resume.

On the ``faulty`` app (tests/fixtures_faults.py), so the session app's sockets stay up:
``serve.run`` again with a changed setting. Its hosts are not part of the app and stay.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.harness import Target, run_fault

pytestmark = pytest.mark.e2e


async def test_a_gateway_redeploy_loses_and_duplicates_nothing(faulty, scale):
    redeploys = 0

    async def redeploy(h):
        nonlocal redeploys
        h.began()
        await asyncio.to_thread(faulty.redeploy)
        redeploys += 1
        # serve.run returns once the new replica serves; the old one keeps its sockets for up to
        # graceful_shutdown_timeout_s. The fault is over when every old socket has been cut.
        end = asyncio.get_running_loop().time() + 30
        while any(c.conn.stats["reconnects"] < redeploys for c in h.clients):
            if asyncio.get_running_loop().time() > end:
                break       # the check below names the clients that were never cut
            await asyncio.sleep(0.05)
        h.cleared()

    async def every_client_was_cut(h, report):
        # Each socket was on a replica the redeploy replaced: without a reconnect, nothing was tested.
        stayed = [c.name for c in h.clients if c.conn.stats["reconnects"] < redeploys]
        assert not stayed, f"{len(stayed)} clients were never cut by {redeploys} redeploys"

    report = await run_fault(Target(faulty.base_url), scale, "gateway-redeploy", redeploy, after=every_client_was_cut)
    assert report.ok, report.explain()


# A send that starts in the moment between a cut and the SDK's reader noticing it: run apart,
# in a child process, because the bug it guards against freezes the event loop it runs on.
_SEND_AS_THE_SOCKET_DIES = r'''
import asyncio, json, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from raychat.client import Client

async def handler(ws):
    try:
        await ws.recv()
        await ws.send(json.dumps({"type": "welcome", "user_id": "u1", "session_id": "s"}))
        async for raw in ws:
            f = json.loads(raw)
            await ws.send(json.dumps({"type": "ack", "client_msg_id": f["client_msg_id"], "conversation_id": "c",
                                      "seq": 1, "created_at": ""}))
    except ConnectionClosed:
        pass        # the cut socket

async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        client = Client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        client.set_tokens("token", None, 900, "u1")
        async with client.connect() as conn:
            conn.websocket.transport.abort()     # the socket is cut ...
            await asyncio.sleep(0)               # ... its connection_lost runs; the reader wakes next round
            ack = await conn.send("c", "hi")     # a send starting right then
            print("acked", ack.seq, "after", conn.stats["send_retries"], "retries", flush=True)

asyncio.run(main())
'''


def test_a_send_starting_as_the_socket_is_cut_waits_for_the_reconnect():
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-c", _SEND_AS_THE_SOCKET_DIES], cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()         # by its pid: ours until reaped
        out, _ = proc.communicate()
        out += "\n[no ack in 10 s: the send spun on the dead socket and starved the event loop]"
    assert proc.returncode == 0 and "acked 1" in out, out[-2000:]
