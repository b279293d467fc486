import asyncio
import time

import pytest

from gateway.passwords import PasswordHasher


@pytest.fixture(scope="module")
def hasher():
    return PasswordHasher()


@pytest.fixture(scope="module")
def stored(hasher):
    return hasher.hash("correct horse battery staple")


def test_hash_is_argon2id_with_owasp_parameters(stored):
    """The encoded hash names argon2id, version 19, m=19456 KiB, t=2, p=1."""
    _, variant, version, params, salt, digest = stored.split("$")
    assert variant == "argon2id"
    assert version == "v=19"
    assert dict(p.split("=") for p in params.split(",")) == {"m": "19456", "t": "2", "p": "1"}
    assert salt and digest


def test_hashing_the_same_password_twice_uses_fresh_salts(hasher):
    """Two hashes of one password differ, so equal passwords are not visible in the store."""
    assert hasher.hash("same password") != hasher.hash("same password")


def test_verify_accepts_the_right_password(hasher, stored):
    assert hasher.verify(stored, "correct horse battery staple") is True


def test_verify_rejects_a_wrong_password(hasher, stored):
    assert hasher.verify(stored, "correct horse battery stapler") is False


def test_verify_of_an_unknown_user_is_false(hasher):
    """stored_hash=None (no such user) never matches, whatever the password."""
    assert hasher.verify(None, "raychat-dummy-password") is False
    assert hasher.verify(None, "correct horse battery staple") is False


def test_unknown_user_costs_as_much_as_a_wrong_password(hasher, stored):
    """verify(None, ...) runs a real argon2 verification, so timing does not reveal unknown users.

    Without the dummy hash it would take microseconds against ~20 ms; the bound is loose on purpose.
    """
    def fastest(stored_hash):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            hasher.verify(stored_hash, "wrong password")
            runs.append(time.perf_counter() - start)
        return min(runs)

    assert fastest(None) >= 0.25 * fastest(stored)


@pytest.mark.parametrize("garbage", ["", "garbage", "$argon2id$v=19$m=1,t=1,p=1$$", "$2b$12$abcdefghijklmnopqrstuv"])
def test_verify_against_a_garbage_hash_is_false(hasher, garbage):
    assert hasher.verify(garbage, "correct horse battery staple") is False


@pytest.mark.parametrize("password", [None, 12345678, b"bytes password", "lone \ud800 surrogate"])
def test_verify_of_a_bad_password_value_is_false(hasher, stored, password):
    """Bad input gives False, never an exception (a handler must never answer it with a 500)."""
    assert hasher.verify(stored, password) is False


def test_needs_rehash_is_false_for_a_current_hash(hasher, stored):
    assert hasher.needs_rehash(stored) is False


def test_needs_rehash_is_true_for_weaker_parameters(hasher):
    import argon2

    old = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert hasher.needs_rehash(old) is True


def test_needs_rehash_is_true_for_a_garbage_hash(hasher):
    assert hasher.needs_rehash("garbage") is True


def test_async_helpers_round_trip(hasher):
    async def main():
        stored = await hasher.hash_async("an async password")
        return (await hasher.verify_async(stored, "an async password"),
                await hasher.verify_async(stored, "another password"),
                await hasher.verify_async(None, "an async password"))

    assert asyncio.run(main()) == (True, False, False)


def test_hash_async_does_not_block_the_event_loop(hasher):
    """Other tasks keep running while a hash is computed."""
    async def main():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        await hasher.hash_async("a password that takes a while")
        done = True
        await task
        return ticks

    assert asyncio.run(main()) > 10
