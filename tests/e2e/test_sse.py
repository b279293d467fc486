"""Server-Sent Events: the same frames as the WebSocket, with cid:seq ids and Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest

from gateway.sse import parse_since
from gateway.tokens import TokenIssuer
from raychat.clock import SystemClock
from raychat.errors import Invalid
from tests.chat_client import create_group, register

pytestmark = pytest.mark.e2e


class Stream:
    def __init__(self, raychat, user, **kw):
        self.client = httpx.AsyncClient(base_url=raychat.base_url, timeout=None)
        self.user, self.kw = user, kw
        self.messages: list[dict] = []
        self.status = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        headers = {**self.user.auth, **self.kw.get("headers", {})}
        async with self.client.stream("GET", "/v1/stream", headers=headers, params=self.kw.get("params")) as r:
            self.status = r.status_code
            current: dict = {}
            async for line in r.aiter_lines():
                if line == "":
                    if current:
                        self.messages.append(current)
                    current = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    current[key] = value

    def events(self, cid):
        return [json.loads(m["data"])["seq"] for m in self.messages
                if m.get("event") == "event" and json.loads(m["data"])["conversation_id"] == cid]

    async def wait(self, predicate, timeout=20):
        end = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < end, self.messages
            assert not self.task.done() or predicate(), f"stream ended: {self.status}"
            await asyncio.sleep(0.05)

    async def close(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.aclose()


async def _send(http, user, cid, n, start=0):
    for i in range(start, start + n):
        r = await http.post(f"/v1/conversations/{cid}/messages", headers=user.auth,
                            json={"client_msg_id": f"m{i}", "body": f"b{i}"})
        assert r.status_code == 201


async def test_stream_delivers_events_with_cid_seq_ids(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    s = Stream(raychat, b)
    await s.wait(lambda: any(m.get("event") == "welcome" for m in s.messages))
    await _send(http, a, cid, 3)
    await s.wait(lambda: s.events(cid) == [1, 2, 3])
    assert [m["id"] for m in s.messages if m.get("event") == "event"] == [f"{cid}:1", f"{cid}:2", f"{cid}:3"]
    await s.close()


async def test_reconnect_with_last_event_id_resumes_that_conversation(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    await _send(http, a, cid, 5)
    s = Stream(raychat, b, headers={"Last-Event-ID": f"{cid}:2"})
    await s.wait(lambda: s.events(cid) == [3, 4, 5])
    await _send(http, a, cid, 1, start=5)
    await s.wait(lambda: s.events(cid) == [3, 4, 5, 6])
    await s.close()
    s2 = Stream(raychat, b, params={"since": f"{cid}:5"})
    await s2.wait(lambda: s2.events(cid) == [6])
    await s2.close()


async def test_a_since_past_the_last_event_is_said_and_mutes_nothing(raychat, http):
    """Found by a client written from the contract: a cursor ahead of the log (a restored store,
    a client bug) held back every live event up to it, without a word."""
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    await _send(http, a, cid, 1)
    s = Stream(raychat, b, params={"since": f"{cid}:3"})
    await s.wait(lambda: any(m.get("event") == "error" for m in s.messages))
    error = json.loads(next(m["data"] for m in s.messages if m.get("event") == "error"))
    assert (error["code"], error["ref"]) == ("invalid", cid) and "past the conversation's last event (1)" in \
        error["message"], error
    await _send(http, a, cid, 4, start=1)
    await s.wait(lambda: s.events(cid) == [2, 3, 4, 5])
    await s.close()


async def test_a_stream_ends_when_its_token_expires(raychat, http):
    """As a WebSocket is closed then: a stream must not outlive a revoked session. Found by a
    client written from the contract (the stream went on past its token)."""
    a = await register(http)
    s = raychat.settings
    short = TokenIssuer(s.jwt_secret, s.jwt_issuer, s.jwt_audience, 3, SystemClock()).issue(a.user_id)[0]
    stream = Stream(raychat, SimpleNamespace(auth={"Authorization": f"Bearer {short}"}))
    await stream.wait(lambda: any(m.get("event") == "welcome" for m in stream.messages))
    await asyncio.wait_for(stream.task, 15)                 # the server ended it
    error = json.loads(stream.messages[-1]["data"])
    assert (stream.messages[-1]["event"], error["code"]) == ("error", "unauthorized"), stream.messages
    await stream.close()


async def test_stream_needs_a_token(raychat, http):
    r = await http.get("/v1/stream")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_bad_since_is_invalid(raychat, http):
    a = await register(http)
    r = await http.get("/v1/stream", headers=a.auth, params={"since": "nonsense"})
    assert r.status_code == 422 and r.json()["code"] == "invalid"


def test_parse_since_lets_last_event_id_win():
    assert parse_since("c1:4,c2:0", "c1:9") == {"c1": 9, "c2": 0}
    with pytest.raises(Invalid):
        parse_since("c1:x", None)
