"""Password hashing: argon2id through argon2-cffi, never hand-rolled.

Hashing costs tens of milliseconds of CPU on purpose, so handlers running on an event loop use
``hash_async`` / ``verify_async``, which run it in a worker thread (argon2-cffi's C call releases
the GIL, so the loop keeps serving other sockets meanwhile).
"""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet, "Argon2id": a minimum configuration of 19 MiB of memory,
# an iteration count of 2 and 1 degree of parallelism.
# https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id
MEMORY_COST_KIB = 19_456
TIME_COST = 2
PARALLELISM = 1


class PasswordHasher:
    """Hashes and checks passwords; ``verify`` and ``needs_rehash`` never raise for bad input."""

    def __init__(self) -> None:
        self._ph = argon2.PasswordHasher(
            time_cost=TIME_COST,
            memory_cost=MEMORY_COST_KIB,
            parallelism=PARALLELISM,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        # Verifying an unknown user against this hash costs what a wrong password costs, so
        # response time does not tell an attacker which usernames exist.
        self._dummy_hash = self._ph.hash("raychat-dummy-password")

    def hash(self, password: str) -> str:
        """The encoded hash (``$argon2id$v=19$m=19456,t=2,p=1$salt$digest``), with a fresh salt."""
        return self._ph.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True only if ``password`` matches ``stored_hash``.

        ``stored_hash=None`` means "no such user": a full verification still runs (against a
        dummy hash) and the answer is False. A mismatch, a malformed hash, a non-string password or
        one that cannot be encoded as UTF-8 (a lone surrogate) all give False.
        """
        if stored_hash is None:
            stored_hash, known_user = self._dummy_hash, False
        else:
            known_user = True
        if not isinstance(stored_hash, str) or not isinstance(password, str):
            return False
        try:
            ok = self._ph.verify(stored_hash, password)
        except (VerificationError, InvalidHashError, ValueError):
            # VerifyMismatchError is a VerificationError; UnicodeEncodeError is a ValueError.
            return False
        return ok and known_user

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if ``stored_hash`` was made with other parameters than today's (or is not a valid
        argon2 hash at all), so the caller should store ``hash(password)`` after a successful login."""
        if not isinstance(stored_hash, str):
            return True
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    async def hash_async(self, password: str) -> str:
        """``hash`` in a worker thread, so the event loop is not blocked."""
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored_hash: str | None, password: str) -> bool:
        """``verify`` in a worker thread, so the event loop is not blocked."""
        return await asyncio.to_thread(self.verify, stored_hash, password)
