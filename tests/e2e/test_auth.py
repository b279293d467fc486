"""Tokens end to end: access-token keys, refresh rotation and reuse, logout, OpenID Connect login
against the local provider (tests/fixtures_oidc.py), and WebSocket token expiry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization

from gateway.tokens import TokenIssuer, key_id
from raychat.clock import FakeClock
from tests.chat_client import register
from tests.fixtures_oidc import SigningKey

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
EXPIRES_IN_S = 2.0        # the short-lived tokens of the expiry tests


async def _login(http, username: str, password: str = PASSWORD) -> dict:
    r = await http.post("/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


async def _fresh(http) -> tuple[object, dict]:
    user = await register(http)
    return user, await _login(http, user.username)


async def _refresh(http, token: str):
    return await http.post("/v1/auth/refresh", json={"refresh_token": token})


async def _me(http, access_token: str):
    return await http.get("/v1/users/me", headers={"Authorization": f"Bearer {access_token}"})


def _short_lived(raychat, user_id: str, expires_in: float = EXPIRES_IN_S) -> str:
    """An access token of the session's own key that expires ``expires_in`` seconds from now."""
    ttl = 60
    clock = FakeClock(start=time.time() - ttl + expires_in)
    return TokenIssuer(raychat.settings.jwt_secret, raychat.settings.jwt_issuer, raychat.settings.jwt_audience,
                       ttl, clock).issue(user_id)[0]


# ---- login and access tokens ---------------------------------------------------------------------

async def test_login_returns_a_token_pair(raychat, http):
    user, pair = await _fresh(http)
    assert set(pair) == {"access_token", "refresh_token", "expires_in", "user_id", "token_type"}
    assert (pair["user_id"], pair["token_type"], pair["expires_in"]) == (user.user_id, "Bearer",
                                                                          raychat.settings.access_token_ttl_s)
    assert len(pair["refresh_token"]) >= 43


async def test_access_tokens_name_their_key(raychat, http):
    _, pair = await _fresh(http)
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == key_id(raychat.settings.jwt_secret)


@pytest.mark.parametrize("kid", ["../../../../etc/passwd", "ffffffff", None])
async def test_an_access_token_with_an_unknown_or_no_kid_is_401(raychat, http, kid):
    user, _ = await _fresh(http)
    now = int(time.time())
    claims = {"sub": user.user_id, "iat": now, "nbf": now, "exp": now + 600, "iss": "raychat", "aud": "raychat"}
    token = jwt.encode(claims, raychat.settings.jwt_secret, algorithm="HS256",
                       headers={"kid": kid} if kid else None)
    r = await _me(http, token)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


# ---- refresh -------------------------------------------------------------------------------------

async def test_refresh_returns_a_new_pair_that_works(http):
    user, pair = await _fresh(http)
    r = await _refresh(http, pair["refresh_token"])
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["user_id"] == user.user_id and fresh["token_type"] == "Bearer"
    assert fresh["refresh_token"] != pair["refresh_token"]
    assert (await _me(http, fresh["access_token"])).json()["user_id"] == user.user_id


async def test_reusing_a_spent_refresh_token_is_401_and_revokes_the_family(http):
    _, pair = await _fresh(http)
    newest = (await _refresh(http, pair["refresh_token"])).json()["refresh_token"]
    reused = await _refresh(http, pair["refresh_token"])
    assert reused.status_code == 401 and reused.json()["code"] == "unauthorized"
    assert (await _refresh(http, newest)).status_code == 401


async def test_reuse_does_not_touch_the_users_other_logins(http):
    user, pair = await _fresh(http)
    other = await _login(http, user.username)
    await _refresh(http, pair["refresh_token"])
    await _refresh(http, pair["refresh_token"])
    assert (await _refresh(http, other["refresh_token"])).status_code == 200


async def test_two_concurrent_refreshes_with_one_token_yield_exactly_one_success(http):
    _, pair = await _fresh(http)
    answers = await asyncio.gather(*(_refresh(http, pair["refresh_token"]) for _ in range(2)))
    assert sorted(r.status_code for r in answers) == [200, 401]


async def test_logout_is_204_and_revokes_the_family(http):
    _, pair = await _fresh(http)
    newest = (await _refresh(http, pair["refresh_token"])).json()["refresh_token"]
    r = await http.post("/v1/auth/logout", json={"refresh_token": newest})
    assert r.status_code == 204 and r.content == b""
    assert (await _refresh(http, newest)).status_code == 401


async def test_logout_with_an_unknown_token_is_still_204(http):
    r = await http.post("/v1/auth/logout", json={"refresh_token": "x" * 43})
    assert r.status_code == 204


@pytest.mark.parametrize("token", ["", "garbage", "x" * 43, "é" * 43])
async def test_refresh_with_a_token_that_is_not_ours_is_401(http, token):
    r = await _refresh(http, token)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


@pytest.mark.parametrize("body", [{}, {"refresh_token": 42}, {"refresh_token": None}, {"refresh_token": "x" * 300}])
async def test_refresh_and_logout_with_a_bad_body_are_422_naming_the_field(http, body):
    for route in ("/v1/auth/refresh", "/v1/auth/logout"):
        r = await http.post(route, json=body)
        assert r.status_code == 422 and "refresh_token" in r.json()["message"], (route, r.text)


# ---- OpenID Connect ------------------------------------------------------------------------------

async def _oidc(http, id_token: str, nonce: str | None = None):
    body = {"id_token": id_token}
    if nonce is not None:
        body["nonce"] = nonce
    return await http.post("/v1/auth/oidc", json=body)


async def test_first_oidc_login_creates_a_user_and_returns_a_pair(http, oidc_provider):
    name = f"Ada{uuid.uuid4().hex[:6]}"
    r = await _oidc(http, oidc_provider.id_token(preferred_username=name, name="Ada L."))
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"access_token", "refresh_token", "expires_in", "user_id", "token_type"}
    me = (await _me(http, pair["access_token"])).json()
    assert (me["username"], me["display_name"]) == (name.lower(), "Ada L.")


async def test_later_oidc_logins_find_the_same_user(http, oidc_provider):
    sub = f"sub-{uuid.uuid4().hex}"
    first = (await _oidc(http, oidc_provider.id_token(sub=sub))).json()
    again = (await _oidc(http, oidc_provider.id_token(sub=sub))).json()
    assert again["user_id"] == first["user_id"]


async def test_another_subject_is_another_user(http, oidc_provider):
    a = (await _oidc(http, oidc_provider.id_token())).json()
    b = (await _oidc(http, oidc_provider.id_token())).json()
    assert a["user_id"] != b["user_id"]


async def test_a_taken_username_is_made_unique(http, oidc_provider):
    user = await register(http)
    pair = (await _oidc(http, oidc_provider.id_token(preferred_username=user.username))).json()
    me = (await _me(http, pair["access_token"])).json()
    assert me["username"] != user.username and me["username"].startswith(user.username)


async def test_concurrent_first_logins_of_one_identity_make_one_user(http, oidc_provider):
    sub = f"sub-{uuid.uuid4().hex}"
    answers = await asyncio.gather(*(_oidc(http, oidc_provider.id_token(sub=sub)) for _ in range(4)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["user_id"] for r in answers}) == 1


async def test_an_oidc_account_has_no_password_login(http, oidc_provider):
    name = f"nopw{uuid.uuid4().hex[:8]}"
    await _oidc(http, oidc_provider.id_token(preferred_username=name))
    for password in (PASSWORD, "", "None", "raychat-dummy-password"):
        r = await http.post("/v1/auth/login", json={"username": name, "password": password})
        assert r.status_code == 401, password


async def test_an_oidc_refresh_token_rotates(http, oidc_provider):
    pair = (await _oidc(http, oidc_provider.id_token())).json()
    r = await _refresh(http, pair["refresh_token"])
    assert r.status_code == 200 and r.json()["user_id"] == pair["user_id"]


async def test_a_matching_nonce_is_accepted(http, oidc_provider):
    assert (await _oidc(http, oidc_provider.id_token(nonce="n-42"), nonce="n-42")).status_code == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(p) -> str:
    return (_b64(json.dumps({"alg": "none", "kid": p.keys[0].kid}).encode()) + "."
            + _b64(json.dumps(p.claims()).encode()) + ".")


def _hs256_with_public_key(p) -> str:
    pem = p.keys[0].private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (_b64(json.dumps({"alg": "HS256", "kid": p.keys[0].kid}).encode()) + "."
                     + _b64(json.dumps(p.claims()).encode()))
    return signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())


BAD_ID_TOKENS = {
    "forged": lambda p: p.sign(p.claims(), key=SigningKey(kid=p.keys[0].kid)),
    "unknown key": lambda p: p.sign(p.claims(), key=SigningKey()),
    "expired": lambda p: p.id_token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
    "wrong audience": lambda p: p.id_token(aud="another-client"),
    "wrong issuer": lambda p: p.id_token(iss="https://accounts.evil.example"),
    "alg none": _alg_none,
    "HS256 with the public key": _hs256_with_public_key,
    "tampered": lambda p: ".".join([p.id_token().split(".")[0], _b64(json.dumps(p.claims(sub="admin")).encode()),
                                    p.id_token().split(".")[2]]),
    "garbage": lambda p: "not.a.token",
}


@pytest.mark.parametrize("case", BAD_ID_TOKENS)
async def test_a_bad_id_token_is_401(http, oidc_provider, case):
    r = await _oidc(http, BAD_ID_TOKENS[case](oidc_provider))
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text


async def test_a_wrong_nonce_is_401(http, oidc_provider):
    r = await _oidc(http, oidc_provider.id_token(nonce="n-1"), nonce="n-2")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


@pytest.mark.parametrize("body", [{}, {"id_token": 42}, {"id_token": "x" * 20_000}, {"id_token": "a", "nonce": 5}])
async def test_an_oidc_bad_body_is_422(http, body):
    assert (await http.post("/v1/auth/oidc", json=body)).status_code == 422


# ---- WebSocket token expiry ----------------------------------------------------------------------

async def _open(raychat, token: str):
    ws = await websockets.connect(raychat.ws_url + "/v1/ws")
    await ws.send(json.dumps({"type": "hello", "token": token}))
    assert (await _next_of(ws, "welcome"))["type"] == "welcome"
    return ws


async def _next_of(ws, kind: str, timeout: float = 10) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == kind:
            return frame


async def _closed_with(ws, timeout: float = 10) -> tuple[int, list[dict]]:
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else 1006), frames


async def test_a_socket_is_closed_1008_when_its_token_expires(raychat, http):
    user = await register(http)
    ws = await _open(raychat, _short_lived(raychat, user.user_id))
    opened = time.monotonic()
    await ws.send('{"type":"ping"}')
    await _next_of(ws, "pong")           # alive before the expiry
    code, frames = await _closed_with(ws)
    assert code == 1008
    assert time.monotonic() - opened < EXPIRES_IN_S + 3
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "unauthorized"


async def test_a_bearer_header_socket_is_closed_when_its_token_expires(raychat, http):
    user = await register(http)
    token = _short_lived(raychat, user.user_id)
    ws = await websockets.connect(raychat.ws_url + "/v1/ws", additional_headers={"Authorization": f"Bearer {token}"})
    await _next_of(ws, "welcome")
    assert (await _closed_with(ws))[0] == 1008


async def test_an_auth_frame_with_a_fresh_token_keeps_the_socket_open(raychat, http):
    user = await register(http)
    ws = await _open(raychat, _short_lived(raychat, user.user_id))
    fresh = await _login(http, user.username)
    await ws.send(json.dumps({"type": "auth", "token": fresh["access_token"]}))
    authed = await _next_of(ws, "authed")
    assert raychat.settings.access_token_ttl_s - 5 <= authed["expires_in"] <= raychat.settings.access_token_ttl_s
    await asyncio.sleep(EXPIRES_IN_S + 1.5)
    await ws.send('{"type":"ping"}')
    await _next_of(ws, "pong")
    await ws.close()


async def test_an_auth_frame_with_another_users_token_is_unauthorized_and_closes_1008(raychat, http):
    user, other = await register(http), await register(http)
    ws = await _open(raychat, user.token)
    await ws.send(json.dumps({"type": "auth", "token": other.token}))
    code, frames = await _closed_with(ws)
    assert code == 1008
    assert [f["code"] for f in frames if f["type"] == "error"] == ["unauthorized"]


@pytest.mark.parametrize("bad", ["garbage", "forged", "expired"])
async def test_an_auth_frame_with_a_bad_token_is_unauthorized_and_closes_1008(raychat, http, bad):
    user = await register(http)
    ws = await _open(raychat, user.token)
    token = {"garbage": "a.b.c",
             "forged": TokenIssuer("another-secret-" + "y" * 40, "raychat", "raychat", 900,
                                   FakeClock(time.time())).issue(user.user_id)[0],
             "expired": _short_lived(raychat, user.user_id, expires_in=-60)}[bad]
    await ws.send(json.dumps({"type": "auth", "token": token}))
    code, frames = await _closed_with(ws)
    assert code == 1008
    assert [f["code"] for f in frames if f["type"] == "error"] == ["unauthorized"]
