"""The SDK's realtime connection against a scripted peer: a real WebSocket server in this process
that answers as a test tells it to, for the answers the real gateway gives only under faults
(``unavailable``, silence, a cut at a chosen moment). The end-to-end behaviour against the real
gateway is in tests/e2e/test_sdk.py."""

from __future__ import annotations

import asyncio
import json
from typing import Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from raychat.client import ApiError, Backoff, Client, SessionClosed

Script = Callable[[ServerConnection, dict, int], Awaitable[None]]


class Peer:
    """Accepts sockets; each answers ``welcome`` to ``hello``, then runs ``script(ws, hello, n)``
    (n counts the connections). Every frame a client sends after hello lands in ``frames``."""

    def __init__(self, script: Script):
        self.script = script
        self.hellos: list[dict] = []
        self.frames: list[dict] = []
        self.url = ""
        self._server = None

    async def __aenter__(self) -> "Peer":
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        self.hellos.append(hello)
        await ws.send(json.dumps({"type": "welcome", "user_id": "u1", "session_id": f"s{len(self.hellos)}"}))
        await self.script(ws, hello, len(self.hellos))

    async def recv(self, ws: ServerConnection) -> dict:
        frame = json.loads(await ws.recv())
        self.frames.append(frame)
        return frame


def sends(peer: Peer) -> list[dict]:
    return [f for f in peer.frames if f["type"] == "send"]


def ack(frame: dict, seq: int) -> str:
    return json.dumps({"type": "ack", "client_msg_id": frame["client_msg_id"],
                       "conversation_id": frame["conversation_id"], "seq": seq,
                       "created_at": "2026-01-01T00:00:00.000Z"})


def event(seq: int, cid: str = "c1") -> str:
    return json.dumps({"type": "event", "conversation_id": cid, "seq": seq, "kind": "message", "sender_id": "u2",
                       "client_msg_id": f"k{seq}", "body": f"m{seq}", "created_at": "2026-01-01T00:00:00.000Z"})


def client_for(peer: Peer, waits: list[float] | None = None, **kw) -> Client:
    async def sleep(s: float) -> None:     # backoff and retry waits are recorded, not slept
        if waits is not None:
            waits.append(s)
        await asyncio.sleep(0.01)
    c = Client(peer.url, sleep=sleep, backoff=Backoff(base_s=0.1, max_s=1.0), **kw)
    c.set_tokens("token-1", None, 900, "u1")
    return c


async def test_send_is_retried_after_unavailable_with_the_same_client_msg_id():
    async def script(ws, hello, n):
        first = await peer.recv(ws)
        await ws.send(json.dumps({"type": "error", "code": "unavailable", "message": "hosts restarting",
                                  "ref": first["client_msg_id"]}))
        second = await peer.recv(ws)
        await ws.send(ack(second, 7))
        await ws.wait_closed()

    async with Peer(script) as peer:
        waits: list[float] = []
        async with client_for(peer, waits) as client, client.connect() as conn:
            got = await conn.send("c1", "hello")
    assert got.seq == 7
    first, second = sends(peer)
    assert first["client_msg_id"] == second["client_msg_id"] == got.client_msg_id
    assert first["body"] == second["body"] == "hello"
    assert waits, "waited before the retry"


async def test_rate_limited_send_waits_retry_after_ms_before_trying_again():
    async def script(ws, hello, n):
        first = await peer.recv(ws)
        await ws.send(json.dumps({"type": "error", "code": "rate_limited", "message": "slow down",
                                  "ref": first["client_msg_id"], "retry_after_ms": 1500}))
        await ws.send(ack(await peer.recv(ws), 1))
        await ws.wait_closed()

    async with Peer(script) as peer:
        waits: list[float] = []
        async with client_for(peer, waits) as client, client.connect() as conn:
            await conn.send("c1", "hi")
    assert len(sends(peer)) == 2
    assert max(waits) >= 1.5


@pytest.mark.parametrize("code,status", [("too_large", 413), ("forbidden", 403), ("invalid", 422),
                                         ("not_found", 404), ("conflict", 409)])
async def test_a_refused_send_raises_at_once(code, status):
    async def script(ws, hello, n):
        f = await peer.recv(ws)
        await ws.send(json.dumps({"type": "error", "code": code, "message": "no", "ref": f["client_msg_id"]}))
        await ws.wait_closed()

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect() as conn:
            with pytest.raises(ApiError) as err:
                await conn.send("c1", "x")
    assert (err.value.code, err.value.status) == (code, status)
    assert len(sends(peer)) == 1


async def test_an_ack_that_does_not_come_is_asked_for_again_with_the_same_id():
    async def script(ws, hello, n):
        first = await peer.recv(ws)          # silence
        second = await peer.recv(ws)
        assert second["client_msg_id"] == first["client_msg_id"]
        await ws.send(ack(second, 3))
        await ws.wait_closed()

    async with Peer(script) as peer:
        async with client_for(peer, ack_timeout_s=0.3) as client, client.connect() as conn:
            assert (await conn.send("c1", "x")).seq == 3
            assert conn.stats["send_retries"] == 1


async def test_after_a_cut_the_client_resumes_from_the_last_seq_and_resends_what_was_not_acked():
    async def script(ws, hello, n):
        if n == 1:
            await ws.send(event(1))
            await ws.send(event(2))
            await peer.recv(ws)              # the send: cut before answering it
            ws.transport.abort()
            return
        assert hello["since"] == {"c1": 2}
        await ws.send(event(2))              # a replay may repeat what was seen
        await ws.send(event(3))
        await ws.send(ack(await peer.recv(ws), 4))
        await ws.send(event(4))
        await ws.wait_closed()

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect(since={"c1": 0}) as conn:
            got = []

            async def read():
                async for ev in conn.events():
                    got.append(ev["seq"])
                    if ev["seq"] == 4:
                        return

            reader = asyncio.ensure_future(read())
            ack4 = await conn.send("c1", "mine")
            await asyncio.wait_for(reader, 10)
            assert conn.stats["reconnects"] == 1
    assert got == [1, 2, 3, 4]
    assert ack4.seq == 4
    first, second = sends(peer)
    assert first["client_msg_id"] == second["client_msg_id"]


async def test_an_expired_token_without_a_refresh_token_ends_the_connection_with_unauthorized():
    async def script(ws, hello, n):
        await ws.send(json.dumps({"type": "error", "code": "unauthorized", "message": "access token expired"}))
        await ws.close(1008, "unauthorized: access token expired")

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect() as conn:
            with pytest.raises(ApiError) as err:
                async for _ in conn.events():
                    pass
            with pytest.raises(ApiError):
                await conn.send("c1", "too late")
    assert err.value.code == "unauthorized"


async def test_a_close_for_repeated_invalid_frames_is_not_retried():
    async def script(ws, hello, n):
        await ws.close(1008, "too many invalid frames")

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect() as conn:
            with pytest.raises(SessionClosed) as err:
                async for _ in conn.events():
                    pass
    assert err.value.code == 1008
    assert len(peer.hellos) == 1


async def test_overload_closes_are_retried_with_growing_waits():
    async def script(ws, hello, n):
        if n < 4:
            await ws.close(1013, "too slow a consumer: reconnect and resume")
            return
        await ws.send(event(1))
        await ws.wait_closed()

    async with Peer(script) as peer:
        waits: list[float] = []
        async with client_for(peer, waits) as client, client.connect() as conn:
            async for ev in conn.events():
                assert ev["seq"] == 1
                break
    assert len(peer.hellos) == 4
    assert waits[0] < waits[2], "backoff grew"


async def test_no_more_than_256_sends_wait_for_their_ack_at_once():
    peak = 0

    async def script(ws, hello, n):
        nonlocal peak
        acked = 0
        while acked < 300:
            # Read all that comes until the client stops sending, then ack all of it: without a
            # window the client would have all 300 out before the first ack.
            pending = [await peer.recv(ws)]
            while True:
                try:
                    pending.append(json.loads(await asyncio.wait_for(ws.recv(), 0.3)))
                except asyncio.TimeoutError:
                    break
            peak = max(peak, len(pending))
            for f in pending:
                acked += 1
                await ws.send(ack(f, acked))
        await ws.wait_closed()

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect() as conn:
            acks = await asyncio.gather(*(conn.send("c1", f"m{i}") for i in range(300)))
    assert sorted(a.seq for a in acks) == list(range(1, 301))
    assert peak == 256


async def test_a_send_made_while_disconnected_goes_out_after_the_reconnect():
    cut = asyncio.Event()

    async def script(ws, hello, n):
        if n == 1:
            await cut.wait()
            ws.transport.abort()
            return
        await ws.send(ack(await peer.recv(ws), 1))
        await ws.wait_closed()

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect() as conn:
            cut.set()
            while conn.websocket is not None:
                await asyncio.sleep(0.01)
            assert (await conn.send("c1", "later")).seq == 1
    assert len(peer.hellos) == 2


async def test_a_frame_over_the_limit_or_not_unicode_is_refused_before_it_is_sent():
    async def script(ws, hello, n):
        await ws.send(ack(await peer.recv(ws), 1))
        await ws.wait_closed()

    async with Peer(script) as peer:
        async with client_for(peer) as client, client.connect() as conn:
            with pytest.raises(ApiError) as err:
                await conn.send("c1", "x" * (64 * 1024))
            assert err.value.code == "too_large"
            with pytest.raises(ApiError) as err:
                await conn.send("c1", "half a pair \ud83d")
            assert err.value.code == "invalid"
            assert (await conn.send("c1", "ünïcode ✓ 🎉")).seq == 1, "the socket is still open"
    assert [f["body"] for f in sends(peer)] == ["ünïcode ✓ 🎉"]
