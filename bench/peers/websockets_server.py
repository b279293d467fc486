"""The upper bound of one Python process: a plain ``websockets`` broadcast server.

No store, no Redis, no ack, no resume: every socket of a group lives in this process's memory,
and a ``send`` is written to all of them with ``websockets.broadcast`` (the library's own
fan-out, which writes without waiting on each socket). Run:

    python -m bench.peers.websockets_server --port 9001

Frames (the shape of raychat's, minus what needs a store): ``hello {user_id, groups}`` →
``welcome``; ``send {conversation_id, client_msg_id, body}`` → ``event`` to every socket of the
group, the sender's own included; ``ping`` → ``pong``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import datetime, timezone

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

GROUPS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    try:
        hello = json.loads(await ws.recv())
    except ConnectionClosed:
        return
    user_id, groups = str(hello["user_id"]), [str(g) for g in hello.get("groups", [])]
    for g in groups:
        GROUPS.setdefault(g, set()).add(ws)
    try:
        await ws.send(json.dumps({"type": "welcome", "user_id": user_id}))
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "send" and frame.get("conversation_id") in groups:
                event = {"type": "event", "conversation_id": frame["conversation_id"],
                         "client_msg_id": frame["client_msg_id"], "sender_id": user_id,
                         "body": frame["body"], "created_at": datetime.now(timezone.utc).isoformat()}
                broadcast(GROUPS[frame["conversation_id"]], json.dumps(event))
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
    except ConnectionClosed:
        pass
    finally:
        for g in groups:
            members = GROUPS.get(g)
            if members is not None:
                members.discard(ws)
                if not members:
                    del GROUPS[g]


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with serve(handler, host, port, max_size=2**20):
        await stop.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    asyncio.run(main(args.host, args.port))
