"""Attacks on sign-in, messaging and the WebSocket edge, through Serve, with limits in the real Redis.

Most run on ``raychat_strict`` (tests/fixtures_raychat.py): default limits, CAPTCHA on, an Origin
allowlist, and 127.0.0.1 trusted as a proxy. Limits outlive a test, so each test signs in from a
client IP of its own (X-Forwarded-For through the trusted 127.0.0.1) with usernames of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import random
import time
import uuid

import httpx
import pytest
import websockets

from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e

WRONG = "wrong password 123"
LOGIN_TOKEN_EVERY_S = 900 / 100          # the per-IP login bucket: 100 per 15 minutes
MESSAGES_PER_S = 5.0                     # the message bucket's default rate, after a burst of 30
SEARCHES_PER_S = 2.0                     # the search bucket's default rate, after a burst of 20


def fresh_ip() -> str:
    """An address from 198.18.0.0/15 (RFC 2544, benchmarking) no other test uses."""
    return str(ipaddress.IPv4Address(0xC6120000 + random.getrandbits(17)))


@pytest.fixture
async def strict_http(raychat_strict):
    """A client of the strict gateway with a client IP of its own."""
    async with httpx.AsyncClient(base_url=raychat_strict.base_url, timeout=30,
                                 headers={"X-Forwarded-For": fresh_ip()}) as client:
        yield client


@pytest.fixture
def token(raychat_strict) -> str:
    return raychat_strict.captcha.pass_token


def name() -> str:
    return f"a{uuid.uuid4().hex[:12]}"


async def login(http: httpx.AsyncClient, username: str, password: str, token: str) -> httpx.Response:
    return await http.post("/v1/auth/login", json={"username": username, "password": password,
                                                   "captcha_token": token})


def without_retry(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "retry_after_ms"}


# ---- login --------------------------------------------------------------------------------------
async def test_the_eleventh_wrong_password_is_429_with_retry_after(strict_http, token):
    user = await register(strict_http, captcha_token=token)
    statuses = [(await login(strict_http, user.username, WRONG, token)).status_code for _ in range(10)]
    assert statuses == [401] * 10
    r = await login(strict_http, user.username, WRONG, token)
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == "rate_limited" and 0 < body["retry_after_ms"] <= 90_000
    assert int(r.headers["Retry-After"]) == -(-body["retry_after_ms"] // 1000)


async def test_a_locked_account_refuses_even_the_right_password_for_now(strict_http, token):
    user = await register(strict_http, captcha_token=token)
    for _ in range(10):
        await login(strict_http, user.username, WRONG, token)
    r = await login(strict_http, user.username, "correct horse battery", token)
    assert r.status_code == 429


async def test_unknown_user_and_wrong_password_get_the_same_429(raychat_strict, token):
    known_ip, unknown_ip = fresh_ip(), fresh_ip()
    async with httpx.AsyncClient(base_url=raychat_strict.base_url, timeout=30) as http:
        user = await register(http, captcha_token=token)
        answers = []
        for username, ip in ((user.username, known_ip), (name(), unknown_ip)):
            http.headers["X-Forwarded-For"] = ip
            for _ in range(10):
                assert (await login(http, username, WRONG, token)).status_code == 401
            answers.append(await login(http, username, WRONG, token))
    known, unknown = answers
    assert known.status_code == unknown.status_code == 429
    assert without_retry(known.json()) == without_retry(unknown.json())
    assert 0 < known.json()["retry_after_ms"] <= 90_000 and 0 < unknown.json()["retry_after_ms"] <= 90_000


async def spray_until_refused(http: httpx.AsyncClient, token: str, most: int) -> tuple[list[int], float]:
    """Sequential logins of new usernames with one password until the first 429: (statuses, seconds)."""
    started, statuses = time.monotonic(), []
    while len(statuses) < most and 429 not in statuses:
        statuses.append((await login(http, name(), "Summer2024!", token)).status_code)
    return statuses, time.monotonic() - started


def refills(seconds: float) -> int:
    """Login tokens the per-IP bucket can have regained in ``seconds`` (the machine may be slow)."""
    return math.ceil(seconds / LOGIN_TOKEN_EVERY_S) + 1


async def test_spraying_one_password_over_1000_usernames_from_one_ip_is_429(strict_http, token):
    statuses, took = await spray_until_refused(strict_http, token, 1000)
    assert set(statuses[:-1]) == {401} and statuses[-1] == 429
    assert 100 <= len(statuses) - 1 <= 100 + refills(took)
    # The rest of the 1,000 at once: each is refused before any hash, whoever the user is.
    started = time.monotonic()
    rest = await asyncio.gather(*(login(strict_http, name(), "Summer2024!", token)
                                  for _ in range(1000 - len(statuses))))
    assert sum(r.status_code == 429 for r in rest) >= len(rest) - refills(time.monotonic() - started)
    assert {r.status_code for r in rest} <= {401, 429}


async def test_a_sprayed_ip_does_not_lock_out_other_ips(strict_http, token):
    statuses, _ = await spray_until_refused(strict_http, token, 300)
    assert statuses[-1] == 429
    strict_http.headers["X-Forwarded-For"] = fresh_ip()
    assert (await login(strict_http, name(), "Summer2024!", token)).status_code == 401


# ---- registration and the client address ----------------------------------------------------------
async def test_the_21st_registration_from_one_ip_is_429(strict_http, token):
    for _ in range(20):
        await register(strict_http, captcha_token=token)
    r = await strict_http.post("/v1/auth/register", json={"username": name(), "password": "long enough",
                                                          "captcha_token": token})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited" and "Retry-After" in r.headers


def from_address(raychat_strict, source: str, **headers) -> httpx.AsyncClient:
    """A client whose TCP connections come from ``source`` (any 127.x address reaches 127.0.0.1)."""
    return httpx.AsyncClient(base_url=raychat_strict.base_url, timeout=30, headers=headers,
                             transport=httpx.AsyncHTTPTransport(local_address=source))


async def exhaust_registrations(http: httpx.AsyncClient, token: str) -> None:
    for _ in range(20):
        await register(http, captcha_token=token)


async def test_behind_serve_the_replica_keys_limits_by_the_real_peer_address(raychat_strict, token):
    """Serve's proxy passes the client's address in scope["client"]: two peers have two buckets.
    (If replicas saw the proxy's address, the second peer would share the first one's bucket.)"""
    async with from_address(raychat_strict, "127.0.0.3") as first, from_address(raychat_strict, "127.0.0.4") as second:
        await exhaust_registrations(first, token)
        r = await first.post("/v1/auth/register", json={"username": name(), "password": "long enough",
                                                        "captcha_token": token})
        assert r.status_code == 429
        await register(second, captcha_token=token)


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(raychat_strict, token):
    async with from_address(raychat_strict, "127.0.0.2") as http:
        await exhaust_registrations(http, token)
        r = await http.post("/v1/auth/register", headers={"X-Forwarded-For": fresh_ip()},
                            json={"username": name(), "password": "long enough", "captcha_token": token})
    assert r.status_code == 429


# ---- CAPTCHA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["register", "login"])
async def test_with_captcha_on_a_missing_token_is_422_naming_it(strict_http, route):
    r = await strict_http.post(f"/v1/auth/{route}", json={"username": name(), "password": "long enough"})
    assert r.status_code == 422 and r.json()["message"].startswith("captcha_token"), r.text


@pytest.mark.parametrize("route", ["register", "login"])
async def test_with_captcha_on_a_failed_check_is_403(strict_http, route):
    r = await strict_http.post(f"/v1/auth/{route}", json={"username": name(), "password": "long enough",
                                                         "captcha_token": "not-solved"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_the_verifier_gets_the_client_ip(raychat_strict, strict_http, token):
    await register(strict_http, captcha_token=token)
    assert raychat_strict.captcha.requests[-1]["remoteip"] == strict_http.headers["X-Forwarded-For"]


# ---- messages -------------------------------------------------------------------------------------
async def test_websocket_sends_over_the_burst_are_rate_limited_by_ref(raychat_strict, strict_http, token):
    a, b = await register(strict_http, captcha_token=token), await register(strict_http, captcha_token=token)
    cid = await create_group(strict_http, a, [b])
    sock = await Socket.open(raychat_strict.ws_url, a)
    started = time.monotonic()
    sent = [await sock.send(cid, f"m{n}") for n in range(100)]
    await sock.wait_for(lambda: len(sock.acks) + len(sock.errors) == 100, timeout=60)
    took = time.monotonic() - started
    limited = [e for e in sock.errors if e["code"] == "rate_limited"]
    assert len(limited) + len(sock.acks) == 100
    assert 30 <= len(sock.acks) <= 30 + math.ceil(took * MESSAGES_PER_S) and limited
    assert {e["ref"] for e in limited} <= set(sent) - set(sock.acks)
    assert all(e["retry_after_ms"] > 0 for e in limited)
    r = await strict_http.get(f"/v1/conversations/{cid}/events", headers=a.auth, params={"limit": 1000})
    assert r.json()["last_seq"] == len(sock.acks)
    await sock.close()


async def test_typing_frames_over_the_burst_are_rate_limited(raychat_strict, strict_http, token):
    a, b = await register(strict_http, captcha_token=token), await register(strict_http, captcha_token=token)
    cid = await create_group(strict_http, a, [b])
    sock = await Socket.open(raychat_strict.ws_url, a)
    burst = raychat_strict.settings.typing_burst
    for _ in range(burst + 10):
        await sock.ws.send(json.dumps({"type": "typing", "conversation_id": cid, "on": True}))
    await sock.wait_for(lambda: any(e["code"] == "rate_limited" and e.get("ref") == cid for e in sock.errors))
    await sock.ws.send(json.dumps({"type": "typing", "conversation_id": cid, "on": False}))   # never limited
    await sock.ws.send('{"type":"ping"}')
    await sock.wait_for(lambda: any(f["type"] == "pong" for f in sock.frames))
    assert sum(e["code"] == "rate_limited" for e in sock.errors) <= 10
    await sock.close()


async def test_http_sends_over_the_burst_are_429(strict_http, token):
    a, b = await register(strict_http, captcha_token=token), await register(strict_http, captcha_token=token)
    cid = await create_group(strict_http, a, [b])

    async def send(n: int) -> httpx.Response:
        return await strict_http.post(f"/v1/conversations/{cid}/messages", headers=a.auth,
                                      json={"client_msg_id": f"k{n}", "body": "spam"})

    started = time.monotonic()
    answers = await asyncio.gather(*(send(n) for n in range(100)))
    took = time.monotonic() - started
    accepted = [r for r in answers if r.status_code == 201]
    limited = [r for r in answers if r.status_code == 429]
    assert len(accepted) + len(limited) == 100
    assert 30 <= len(accepted) <= 30 + math.ceil(took * MESSAGES_PER_S) and limited
    assert limited[0].json()["code"] == "rate_limited" and "Retry-After" in limited[0].headers


async def test_searches_over_the_burst_are_429_and_a_bad_query_costs_nothing(strict_http, token):
    a = await register(strict_http, captcha_token=token)
    # Malformed queries are answered 422 before the limit: they leave the whole burst.
    for _ in range(25):
        r = await strict_http.get("/v1/search", headers=a.auth, params={"q": "!!!"})
        assert r.status_code == 422 and r.json()["code"] == "invalid"

    async def search() -> httpx.Response:
        return await strict_http.get("/v1/search", headers=a.auth, params={"q": "hello"})

    started = time.monotonic()
    answers = await asyncio.gather(*(search() for _ in range(60)))
    took = time.monotonic() - started
    found = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(found) + len(limited) == 60
    assert 20 <= len(found) <= 20 + math.ceil(took * SEARCHES_PER_S) and limited
    assert limited[0].json()["code"] == "rate_limited" and limited[0].json()["retry_after_ms"] > 0
    assert int(limited[0].headers["Retry-After"]) >= 1
    # Another user's searches are their own.
    b = await register(strict_http, captcha_token=token)
    assert (await strict_http.get("/v1/search", headers=b.auth, params={"q": "hello"})).status_code == 200


# ---- sockets and the edge ---------------------------------------------------------------------------
async def test_the_21st_socket_of_a_user_gets_rate_limited_and_1008(raychat_strict, strict_http, token):
    a = await register(strict_http, captcha_token=token)
    sockets = [await Socket.open(raychat_strict.ws_url, a) for _ in range(20)]
    ws = await websockets.connect(raychat_strict.ws_url + "/v1/ws")
    await ws.send(json.dumps({"type": "hello", "token": a.token}))
    err = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert err["type"] == "error" and err["code"] == "rate_limited" and err["retry_after_ms"] > 0
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1008
    await sockets.pop().close()
    for _ in range(50):     # the slot is freed as the server sees the close
        try:
            sockets.append(await Socket.open(raychat_strict.ws_url, a))
            break
        except (AssertionError, websockets.ConnectionClosed):
            await asyncio.sleep(0.1)
    assert len(sockets) == 20
    for s in sockets:
        await s.close()


async def test_a_foreign_origin_gets_403_before_the_upgrade(raychat_strict):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(raychat_strict.ws_url + "/v1/ws", origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_an_allowlisted_origin_gets_a_socket(raychat_strict, strict_http, token):
    a = await register(strict_http, captcha_token=token)
    ws = await websockets.connect(raychat_strict.ws_url + "/v1/ws", origin="https://chat.example")
    await ws.send(json.dumps({"type": "hello", "token": a.token}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
    await ws.close()


async def test_without_an_allowlist_a_foreign_origin_gets_403(raychat):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(raychat.ws_url + "/v1/ws", origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_without_an_allowlist_the_same_host_origin_gets_a_socket(raychat, http):
    a = await register(http)
    ws = await websockets.connect(raychat.ws_url + "/v1/ws", origin=f"http://127.0.0.1:{raychat.port}")
    await ws.send(json.dumps({"type": "hello", "token": a.token}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
    await ws.close()


async def test_no_token_gets_no_socket_and_no_data(raychat_strict):
    ws = await websockets.connect(raychat_strict.ws_url + "/v1/ws")
    await ws.send(json.dumps({"type": "hello"}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1008
    async with httpx.AsyncClient(base_url=raychat_strict.base_url) as http:
        r = await http.get("/v1/conversations")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
