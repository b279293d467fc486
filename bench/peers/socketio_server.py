"""python-socketio with its Redis manager, as an ASGI app under uvicorn, one room per group.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn bench.peers.socketio_server:app --port 9003 --workers 2

``AsyncRedisManager`` is what the python-socketio docs prescribe for more than one server
process: every ``emit`` to a room is published to Redis, and each process delivers it to the
room's sockets it holds. Two uvicorn workers need no sticky sessions here because the clients
use the WebSocket transport only (long-polling would). No store, no ack, no resume: a client
that reconnects is a new socket, and what was emitted meanwhile is gone.

The client's ``auth`` says who it is and its groups; events ``send`` ({conversation_id,
client_msg_id, body}) and ``ping``; the server emits ``event`` (the shape of raychat's) to the
room, the sender included, and ``pong`` to the sender.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import socketio

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*",
                           client_manager=socketio.AsyncRedisManager(
                               os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")))
app = socketio.ASGIApp(sio)


@sio.event
async def connect(sid, environ, auth):
    auth = auth or {}
    groups = [str(g) for g in auth.get("groups", [])]
    await sio.save_session(sid, {"user_id": str(auth.get("user_id", sid)), "groups": groups})
    for g in groups:
        await sio.enter_room(sid, g)


@sio.event
async def send(sid, data):
    session = await sio.get_session(sid)
    if data.get("conversation_id") not in session["groups"]:
        return
    await sio.emit("event", {"conversation_id": data["conversation_id"], "client_msg_id": data["client_msg_id"],
                             "sender_id": session["user_id"], "body": data["body"],
                             "created_at": datetime.now(timezone.utc).isoformat()},
                   room=data["conversation_id"])


@sio.event
async def ping(sid):
    await sio.emit("pong", {}, to=sid)
