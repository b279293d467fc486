"""Helpers for the end-to-end tests. Accounts and conversations go through the SDK
(raychat/client.py); ``Socket`` stays a raw WebSocket, for the tests that look at frames."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

import httpx
import websockets

from raychat.client import Client

PASSWORD = "correct horse battery"


@dataclass
class User:
    user_id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def sdk(http: httpx.AsyncClient, user: User | None = None) -> Client:
    """An SDK client on the test's own httpx client (its base URL, headers and transport), acting
    as ``user`` when given. Only the access token is known here, so nothing is refreshed."""
    client = Client(str(http.base_url), http=http)
    if user is not None:
        client.set_tokens(user.token, None, 900, user.user_id)
    return client


async def register(http: httpx.AsyncClient, prefix: str = "u", captcha_token: str | None = None) -> User:
    """A new user, logged in. ``captcha_token`` is for a gateway with CAPTCHA on."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    client = sdk(http)
    await client.register(name, PASSWORD, captcha_token=captcha_token)
    await client.login(name, PASSWORD, captcha_token=captcha_token)
    return User(client.user_id, name, client.access_token)


async def create_group(http: httpx.AsyncClient, owner: User, members: list[User], title: str = "g") -> str:
    conv = await sdk(http, owner).create_group(title, [m.user_id for m in members])
    return conv["conversation_id"]


@dataclass
class Socket:
    """One WebSocket: collects events per conversation, acks by client_msg_id, other frames in order."""
    ws: websockets.ClientConnection
    welcome: dict
    events: dict[str, list[int]] = field(default_factory=dict)
    bodies: dict[tuple[str, int], str] = field(default_factory=dict)
    acks: dict[str, dict] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    frames: list[dict] = field(default_factory=list)
    _reader: asyncio.Task | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None

    @classmethod
    async def open(cls, ws_url: str, user: User, since: dict[str, int] | None = None) -> "Socket":
        ws = await websockets.connect(ws_url + "/v1/ws", max_size=2**22)
        hello = {"type": "hello", "token": user.token}
        if since:
            hello["since"] = since
        await ws.send(json.dumps(hello))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        sock = cls(ws, welcome)
        sock._reader = asyncio.get_running_loop().create_task(sock._read())
        return sock

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                f = json.loads(raw)
                self.frames.append(f)
                if f["type"] == "event":
                    self.events.setdefault(f["conversation_id"], []).append(f["seq"])
                    self.bodies[(f["conversation_id"], f["seq"])] = f.get("body")
                elif f["type"] == "ack" and "client_msg_id" in f:
                    self.acks[f["client_msg_id"]] = f
                elif f["type"] == "error":
                    self.errors.append(f)
                self._changed.set()
        except websockets.ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else 1006
        finally:
            self._changed.set()

    async def send(self, cid: str, body: str, cmid: str | None = None) -> str:
        cmid = cmid or uuid.uuid4().hex
        await self.ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "body": body}))
        return cmid

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        async def loop():
            while not predicate():
                self._changed.clear()
                if self._reader.done() and not predicate():
                    raise AssertionError(f"socket closed ({self.close_code}) before the condition held")
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)

    def deduped(self, cid: str) -> list[int]:
        return sorted(set(self.events.get(cid, [])))

    async def close(self) -> None:
        await self.ws.close()
        if self._reader:
            await asyncio.wait([self._reader], timeout=5)


class RetryingSender:
    """Sends through a Socket and retries, with the same client_msg_id, whatever was not acked:
    on a retryable error frame at once (after a short pause), and on silence after ``resend_after``."""

    RETRYABLE = {"unavailable", "rate_limited", "internal"}

    def __init__(self, sock: Socket, cid: str, resend_after: float = 3.0):
        self.sock, self.cid, self.resend_after = sock, cid, resend_after
        self.pending: dict[str, tuple[str, float]] = {}
        self.sent = 0
        self.retried = 0
        self._seen_errors = 0

    async def send(self, body: str) -> str:
        cmid = uuid.uuid4().hex
        self.pending[cmid] = (body, asyncio.get_running_loop().time())
        self.sent += 1
        await self.sock.send(self.cid, body, cmid=cmid)
        return cmid

    async def pump(self) -> None:
        """One round: drop what was acked, resend what failed or timed out."""
        loop = asyncio.get_running_loop()
        for cmid in [k for k in self.pending if k in self.sock.acks]:
            del self.pending[cmid]
        failed = set()
        for err in self.sock.errors[self._seen_errors:]:
            if err.get("ref") in self.pending:
                assert err["code"] in self.RETRYABLE, err
                failed.add(err["ref"])
        self._seen_errors = len(self.sock.errors)
        for cmid, (body, at) in list(self.pending.items()):
            if cmid in failed or loop.time() - at > self.resend_after:
                self.pending[cmid] = (body, loop.time())
                self.retried += 1
                await self.sock.send(self.cid, body, cmid=cmid)

    async def drain(self, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            await self.pump()
            if not self.pending:
                return
            if loop.time() > end:
                raise AssertionError(f"{len(self.pending)} sends never acked")
            await asyncio.sleep(0.1)
