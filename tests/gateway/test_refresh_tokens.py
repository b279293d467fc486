"""Refresh-token rotation and reuse detection, on the real MongoDB store, with a FakeClock."""

from __future__ import annotations

import asyncio

import pytest

from gateway.refresh_tokens import RefreshTokens, token_hash
from raychat.clock import FakeClock
from raychat.errors import Unauthorized

TTL = 30 * 86_400
USER = "u-1"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(mongo_stores):
    return mongo_stores.refresh_tokens


@pytest.fixture
def tokens(store, clock):
    return RefreshTokens(store, TTL, clock)


async def _refused(coro) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        await coro
    return info.value


async def test_an_issued_token_has_256_random_bits(tokens):
    """43 URL-safe base64 characters carry 258 bits; the token is token_urlsafe(32)."""
    a, b = await tokens.issue(USER), await tokens.issue(USER)
    assert len(a) == 43 and a != b


async def test_only_the_sha256_of_a_token_is_stored(tokens, store):
    token = await tokens.issue(USER)
    stored = await store.get(token_hash(token))
    assert stored["user_id"] == USER
    assert token not in repr(stored)


async def test_rotate_returns_the_user_and_a_new_token(tokens):
    first = await tokens.issue(USER)
    rotated = await tokens.rotate(first)
    assert rotated.user_id == USER and rotated.refresh_token != first


async def test_the_new_token_belongs_to_the_same_family(tokens, store):
    first = await tokens.issue(USER)
    second = (await tokens.rotate(first)).refresh_token
    assert (await store.get(token_hash(second)))["family_id"] == (await store.get(token_hash(first)))["family_id"]


async def test_each_login_starts_a_family_of_its_own(tokens, store):
    a, b = await tokens.issue(USER), await tokens.issue(USER)
    assert (await store.get(token_hash(a)))["family_id"] != (await store.get(token_hash(b)))["family_id"]


async def test_the_new_token_rotates_in_turn(tokens):
    token = await tokens.issue(USER)
    for _ in range(3):
        token = (await tokens.rotate(token)).refresh_token
    assert (await tokens.rotate(token)).user_id == USER


async def test_reusing_a_spent_token_is_refused(tokens):
    first = await tokens.issue(USER)
    await tokens.rotate(first)
    assert "already used" in (await _refused(tokens.rotate(first))).message


async def test_reusing_a_spent_token_revokes_the_whole_family(tokens):
    """The thief and the owner both lose: the owner's newest token stops working too."""
    first = await tokens.issue(USER)
    second = (await tokens.rotate(first)).refresh_token
    await _refused(tokens.rotate(first))
    await _refused(tokens.rotate(second))


async def test_reuse_leaves_other_families_alone(tokens):
    """Another device of the same user stays logged in."""
    other_device = await tokens.issue(USER)
    first = await tokens.issue(USER)
    await tokens.rotate(first)
    await _refused(tokens.rotate(first))
    assert (await tokens.rotate(other_device)).user_id == USER


async def test_two_concurrent_refreshes_with_one_token_yield_exactly_one_success(tokens):
    first = await tokens.issue(USER)
    results = await asyncio.gather(tokens.rotate(first), tokens.rotate(first), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Rotated", "Unauthorized"]


async def test_after_a_concurrent_reuse_no_token_of_the_family_works(tokens):
    """The race is a reuse too: the winner's new token is revoked with the rest of its family."""
    first = await tokens.issue(USER)
    results = await asyncio.gather(*(tokens.rotate(first) for _ in range(5)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    await _refused(tokens.rotate(winners[0].refresh_token))


async def test_an_expired_token_is_refused(tokens, clock):
    first = await tokens.issue(USER)
    clock.advance(TTL)
    assert "expired" in (await _refused(tokens.rotate(first))).message


async def test_a_token_is_valid_until_its_expiry(tokens, clock):
    first = await tokens.issue(USER)
    clock.advance(TTL - 1)
    assert (await tokens.rotate(first)).user_id == USER


async def test_each_rotation_starts_a_fresh_ttl(tokens, clock):
    token = await tokens.issue(USER)
    for _ in range(3):
        clock.advance(TTL - 1)
        token = (await tokens.rotate(token)).refresh_token
    assert (await tokens.rotate(token)).user_id == USER


@pytest.mark.parametrize("presented", ["", "x" * 43, "a" * 42, "a" * 44, "a.b.c", "é" * 43, None, 42])
async def test_a_token_that_is_not_ours_is_refused(tokens, presented):
    await _refused(tokens.rotate(presented))


async def test_revoke_ends_the_family(tokens):
    first = await tokens.issue(USER)
    second = (await tokens.rotate(first)).refresh_token
    await tokens.revoke(second)
    await _refused(tokens.rotate(second))


async def test_revoking_a_token_that_is_not_ours_changes_nothing(tokens):
    mine = await tokens.issue(USER)
    await tokens.revoke("x" * 43)
    await tokens.revoke("garbage")
    assert (await tokens.rotate(mine)).user_id == USER
