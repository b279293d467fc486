"""How the load generator speaks to each target: accounts and conversations, the handshake, the
frames it sends, and what it makes of the frames it receives.

Every target is driven over the same client library (``websockets``), so the client's cost per
frame is the same whichever server is measured:

    raychat     docs/protocol.md: ``hello {token, since?}`` → ``welcome``; ``send`` → ``ack`` and an
                ``event`` per member socket. Accounts and conversations go through the SDK
                (raychat/client.py); see ``RaychatWire.prepare`` for how users are made.
    websockets  bench/peers/websockets_server.py: ``hello {user_id, groups}``, ``send`` → ``event``.
    starlette   bench/peers/starlette_server.py: the same frames, at ``/ws``.
    socketio    bench/peers/socketio_server.py, spoken as Engine.IO 4 over its WebSocket transport
                (``/socket.io/?EIO=4&transport=websocket``): the open packet ``0{…}``, connect
                ``40{auth}`` → ``40{sid}``, events ``42["name", data]``, and the server's heartbeat
                ``2`` answered ``3``. python-socketio's ``AsyncClient`` would give each socket its
                own aiohttp session and background tasks, and would make this client's cost differ
                by target; the packets are the ones it sends.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

import websockets
from websockets.asyncio.client import ClientConnection

OPEN_TIMEOUT_S = 30.0      # a handshake on a loaded 2-core box can take seconds; past this it failed
MAX_FRAME = 2**22


@dataclass
class Member:
    """One simulated user: who they are to the server, and the conversations they are in."""
    index: int
    user_id: str
    token: str
    groups: list[str]


@dataclass(frozen=True)
class Frame:
    """A received frame, reduced to what the ledger needs."""
    kind: str                   # event | ack | error | pong | reply (answer ``reply`` at once) | other
    msg_id: str | None = None   # the client_msg_id it is about (event, ack; error: its ref)
    cid: str | None = None
    seq: int | None = None
    code: str | None = None     # error code
    reply: str | None = None


class Wire(Protocol):
    """One target's protocol. ``prepare`` makes ``users`` users and the conversations listed (each a
    list of member indexes) and returns the members and the conversation ids, in order."""
    name: str
    has_ack: bool
    has_resume: bool

    async def prepare(self, users: int, groups: list[list[int]]) -> tuple[list[Member], list[str]]: ...

    async def open(self, member: Member, since: dict[str, int] | None = None) -> ClientConnection: ...

    def send_frame(self, member: Member, cid: str, msg_id: str, body: str) -> str: ...

    def ping_frame(self) -> str: ...

    def parse(self, raw: str | bytes) -> Frame: ...


COMPRESSION: list[str | None] = ["deflate"]   # bench/load.py's --no-compression sets [None]


async def _connect(url: str, **kw: Any) -> ClientConnection:
    # The library's defaults otherwise (keepalive ping every 20 s, permessage-deflate offered), as
    # a real client has them.
    return await websockets.connect(url, max_size=MAX_FRAME, open_timeout=OPEN_TIMEOUT_S,
                                    compression=COMPRESSION[0], **kw)


def _plain_event(f: dict[str, Any]) -> Frame:
    kind = f.get("type")
    if kind == "event":
        return Frame("event", f.get("client_msg_id"), f.get("conversation_id"), f.get("seq"))
    if kind == "pong":
        return Frame("pong")
    return Frame("other")


class PlainWire:
    """The websockets and Starlette peers: raychat's frames without tokens, acks or seqs."""
    has_ack = False
    has_resume = False

    def __init__(self, name: str, ws_url: str, run: str):
        self.name, self.ws_url, self.run = name, ws_url, run

    async def prepare(self, users: int, groups: list[list[int]]) -> tuple[list[Member], list[str]]:
        cids = [f"g{self.run}-{j}" for j in range(len(groups))]
        return _members(users, groups, cids, lambda i: (f"u{self.run}-{i}", "")), cids

    async def open(self, member: Member, since: dict[str, int] | None = None) -> ClientConnection:
        ws = await _connect(self.ws_url)
        try:
            await ws.send(json.dumps({"type": "hello", "user_id": member.user_id, "groups": member.groups}))
            while json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S)).get("type") != "welcome":
                pass
        except BaseException:
            await ws.close()
            raise
        return ws

    def send_frame(self, member: Member, cid: str, msg_id: str, body: str) -> str:
        return json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": msg_id, "body": body})

    def ping_frame(self) -> str:
        return '{"type":"ping"}'

    def parse(self, raw: str | bytes) -> Frame:
        return _plain_event(json.loads(raw))


class SocketIoWire(PlainWire):
    """The python-socketio peer over Engine.IO's WebSocket transport (see the module docstring)."""

    async def open(self, member: Member, since: dict[str, int] | None = None) -> ClientConnection:
        ws = await _connect(self.ws_url + "/socket.io/?EIO=4&transport=websocket")
        try:
            first = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S)
            if not isinstance(first, str) or not first.startswith("0"):
                raise ConnectionError(f"no Engine.IO open packet: {first!r:.80}")
            await ws.send("40" + json.dumps({"user_id": member.user_id, "groups": member.groups}))
            while True:
                pkt = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S)
                if pkt == "2":
                    await ws.send("3")
                elif isinstance(pkt, str) and pkt.startswith("40"):
                    break
                elif isinstance(pkt, str) and pkt.startswith("44"):
                    raise ConnectionError(f"socket.io refused the connect: {pkt[:120]}")
        except BaseException:
            await ws.close()
            raise
        return ws

    def send_frame(self, member: Member, cid: str, msg_id: str, body: str) -> str:
        return "42" + json.dumps(["send", {"conversation_id": cid, "client_msg_id": msg_id, "body": body}])

    def ping_frame(self) -> str:
        return '42["ping"]'

    def parse(self, raw: str | bytes) -> Frame:
        if raw == "2":                       # Engine.IO heartbeat: answer or be dropped
            return Frame("reply", reply="3")
        if isinstance(raw, str) and raw.startswith("42"):
            name, *data = json.loads(raw[2:])
            if name == "event" and data:
                return _plain_event({"type": "event", **data[0]})
            if name == "pong":
                return Frame("pong")
        return Frame("other")


class RaychatWire:
    """raychat through its gateway.

    Users are made straight in raychat's user store through its storage port (the shape of an
    account made by OpenID Connect: no password), and access tokens are signed with the
    server's key (``TokenIssuer``), as the gateway would sign them at login. Registering and
    logging in 1,000 users over HTTP would spend 2,000 argon2id hashes, over a minute of both
    cores at 25–30 logins/s (bench/auth_bench.py measures that); it is not what this benchmark
    measures. Conversations are made over HTTP with the SDK; sockets stay raw, because the SDK's
    ``Connection`` hides what is counted here (a repeated event on one socket) and adds per-socket
    tasks and queues. Its ``EventOrder`` gives the resume point (``hello.since``) after a drop.
    """
    has_ack = True
    has_resume = True
    name = "raychat"

    def __init__(self, base_url: str, mongodb_uri: str, mongodb_db: str, jwt_secret: str, run: str):
        self.base_url = base_url.rstrip("/")
        scheme, _, rest = self.base_url.partition("://")
        self.ws_url = {"https": "wss", "http": "ws"}.get(scheme, scheme) + "://" + rest + "/v1/ws"
        self.mongodb_uri, self.mongodb_db, self.jwt_secret, self.run = mongodb_uri, mongodb_db, jwt_secret, run
        self._batches = 0       # each prepare makes new users

    async def prepare(self, users: int, groups: list[list[int]]) -> tuple[list[Member], list[str]]:
        import httpx

        from gateway.tokens import TokenIssuer
        from raychat.client import Client
        from actors.events import utc
        from raychat.clock import SystemClock
        from raychat.config import Settings
        from storage.mongo import MongoStores

        defaults = Settings()
        clock = SystemClock()
        # Long enough for the longest run: the gateway closes a socket when its token expires.
        issuer = TokenIssuer(self.jwt_secret, defaults.jwt_issuer, defaults.jwt_audience, 6 * 3600, clock)
        stores = MongoStores(self.mongodb_uri, self.mongodb_db, timeout_ms=30_000)
        self._batches += 1
        ids = [f"u_bench{self.run}{self._batches}_{i:05d}" for i in range(users)]
        sem = asyncio.Semaphore(16)

        async def make(uid: str) -> None:
            async with sem:
                await stores.users.create({"user_id": uid, "username": uid.lower(), "display_name": uid,
                                           "password_hash": None, "created_at": utc(clock.now())})

        try:
            await asyncio.gather(*(make(uid) for uid in ids))
        finally:
            await stores.close()
        tokens = [issuer.issue(uid)[0] for uid in ids]
        cids: list[str] = []
        async with httpx.AsyncClient(timeout=120) as http:
            async def create(j: int, g: list[int]) -> str:
                owner = Client(self.base_url, http=http)
                owner.set_tokens(tokens[g[0]], None, 6 * 3600, ids[g[0]])
                async with sem:
                    if len(g) == 2:
                        conv = await owner.create_direct(ids[g[1]])
                    else:
                        conv = await owner.create_group(f"bench {j}", [ids[m] for m in g[1:]])
                return conv["conversation_id"]

            cids = list(await asyncio.gather(*(create(j, g) for j, g in enumerate(groups))))
        return _members(users, groups, cids, lambda i: (ids[i], tokens[i])), cids

    async def open(self, member: Member, since: dict[str, int] | None = None) -> ClientConnection:
        ws = await _connect(self.ws_url)
        try:
            hello: dict[str, Any] = {"type": "hello", "token": member.token}
            if since:
                hello["since"] = since
            await ws.send(json.dumps(hello))
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
                if f.get("type") == "welcome":
                    break
                if f.get("type") == "error":
                    raise ConnectionError(f"refused: {f.get('code')}: {f.get('message')}")
        except BaseException:
            await ws.close()
            raise
        return ws

    def send_frame(self, member: Member, cid: str, msg_id: str, body: str) -> str:
        return json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": msg_id, "body": body})

    def ping_frame(self) -> str:
        return '{"type":"ping"}'

    def parse(self, raw: str | bytes) -> Frame:
        f = json.loads(raw)
        kind = f.get("type")
        if kind == "event":
            return Frame("event", f.get("client_msg_id"), f.get("conversation_id"), f.get("seq"))
        if kind == "ack":
            return Frame("ack", f.get("client_msg_id"), f.get("conversation_id"), f.get("seq"))
        if kind == "error":
            return Frame("error", f.get("ref"), code=f.get("code"))
        if kind == "pong":
            return Frame("pong")
        return Frame("other")


def _members(users: int, groups: list[list[int]], cids: list[str], ident) -> list[Member]:
    member_of: list[list[str]] = [[] for _ in range(users)]
    for g, cid in zip(groups, cids):
        for i in g:
            member_of[i].append(cid)
    out = []
    for i in range(users):
        uid, token = ident(i)
        out.append(Member(i, uid, token, member_of[i]))
    return out


def make_wire(target: str, url: str, run: str, *, mongodb_uri: str | None = None, mongodb_db: str | None = None,
              jwt_secret: str | None = None) -> Wire:
    """``url`` is the server's base, http:// for raychat (its HTTP routes) and ws:// for the peers."""
    if target == "raychat":
        if not (mongodb_uri and mongodb_db and jwt_secret):
            raise ValueError("raychat needs --mongodb-uri, --mongodb-db and --jwt-secret (to make its users)")
        return RaychatWire(url, mongodb_uri, mongodb_db, jwt_secret, run)
    if target == "websockets":
        return PlainWire("websockets", url.rstrip("/") + "/", run)
    if target == "starlette":
        return PlainWire("starlette", url.rstrip("/") + "/ws", run)
    if target == "socketio":
        return SocketIoWire("socketio", url.rstrip("/"), run)
    raise ValueError(f"unknown target {target!r}")
