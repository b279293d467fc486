"""The Serve WebSocket floor: the same frames and fan-out as raychat, with no actors, store or auth.

A diagnostic, not a peer: one Serve replica keeps every socket of a group in memory,
numbers each ``send`` itself and writes the ``event`` to every member's writer queue at
once, then the ``ack``. Whatever latency this shows under the same load is what Ray
Serve's WebSocket proxying (client ⇄ proxy actor ⇄ replica) costs before raychat does
anything; raychat's numbers minus these are the actors' and the store's share.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from ray import serve

app = FastAPI()
_groups: dict[str, list[asyncio.Queue]] = {}
_seq: dict[str, int] = {}


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


@app.websocket("/v1/ws")
async def ws_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    hello = json.loads(await ws.receive_text())
    cid = hello["token"]          # the benchmark passes the group id as the "token"
    out: asyncio.Queue = asyncio.Queue()
    _groups.setdefault(cid, []).append(out)

    async def writer() -> None:
        while True:
            await ws.send_text(await out.get())

    task = asyncio.get_running_loop().create_task(writer())
    out.put_nowait(_dumps({"type": "welcome", "user_id": cid, "session_id": str(id(out))}))
    try:
        while True:
            f = json.loads(await ws.receive_text())
            if f["type"] == "ping":
                out.put_nowait('{"type":"pong"}')
            elif f["type"] == "send":
                seq = _seq[cid] = _seq.get(cid, 0) + 1
                now = datetime.now(timezone.utc).isoformat()
                frame = _dumps({"type": "event", "conversation_id": cid, "seq": seq, "kind": "message",
                                "sender_id": "x", "client_msg_id": f["client_msg_id"], "body": f["body"],
                                "attachments": [], "reply_to": None, "created_at": now})
                for q in _groups[cid]:
                    q.put_nowait(frame)
                out.put_nowait(_dumps({"type": "ack", "client_msg_id": f["client_msg_id"],
                                       "conversation_id": cid, "seq": seq, "created_at": now}))
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        _groups[cid].remove(out)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=10_000)
@serve.ingress(app)
class ServeFloor:
    pass
