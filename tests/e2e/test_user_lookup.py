"""GET /v1/users?username=: from a name to a user, end to end through Serve."""

from __future__ import annotations

import pytest

from tests.chat_client import register

pytestmark = pytest.mark.e2e


async def test_a_username_finds_its_public_profile(http):
    alice, bob = await register(http, "la"), await register(http, "lb")
    r = await http.get("/v1/users", params={"username": bob.username}, headers=alice.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": bob.user_id, "username": bob.username, "display_name": bob.username}


async def test_the_name_is_folded_as_at_login(http):
    alice, bob = await register(http, "la"), await register(http, "lb")
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in bob.username.upper())
    for spelled in (bob.username.upper(), fullwidth):
        r = await http.get("/v1/users", params={"username": spelled}, headers=alice.auth)
        assert r.status_code == 200, (spelled, r.text)
        assert r.json()["user_id"] == bob.user_id


async def test_no_such_user_is_404(http):
    alice = await register(http, "la")
    r = await http.get("/v1/users", params={"username": "nobody-" + alice.username}, headers=alice.auth)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


@pytest.mark.parametrize("params", [{}, {"username": ""}, {"username": "ab"}, {"username": "a b c"},
                                    {"username": "x" * 300}])
async def test_what_cannot_be_a_username_is_422_naming_it(http, params):
    alice = await register(http, "la")
    r = await http.get("/v1/users", params=params, headers=alice.auth)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid"
    assert r.json()["message"].startswith("username")


async def test_the_lookup_needs_a_token(http):
    bob = await register(http, "lb")
    r = await http.get("/v1/users", params={"username": bob.username})
    assert r.status_code == 401
