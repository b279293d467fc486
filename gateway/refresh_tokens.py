"""Refresh tokens: opaque, single-use, rotated on every use, revoked by family on reuse.

A refresh token is 32 random bytes (256 bits) as URL-safe base64, 43 characters. Only its SHA-256
is stored (``RefreshTokenStore``), so a copy of the database holds no usable token; a plain hash
suffices because the input is random, not a password.

Each login starts a *family*; every refresh spends the presented token and issues the next one of
the same family. A spent token presented again means two parties hold the family (a stolen token,
or a client that lost track): the whole family is revoked and both must log in again (OAuth 2.0
Security BCP, "refresh token rotation"). ``rotate`` runs in this order:

    1. read the presented token: unknown or expired → Unauthorized;
       spent or revoked → reuse: revoke the family, Unauthorized
    2. insert its successor into the same family
    3. spend the presented token, if it is still live, in one atomic conditional update
    4. if 3 failed, another request spent it since 1: that is a reuse too → revoke, Unauthorized

Of two concurrent refreshes with one token exactly one passes step 3. Inserting the successor
*before* spending (2 before 3) is what makes the revocation in 4 complete: the winner's successor
is already stored when the loser revokes, so no token of a revoked family stays usable.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from actors.events import utc
from raychat.clock import Clock
from raychat.errors import Unauthorized
from storage.ports import RefreshTokenStore

from .service_common import new_id

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")    # what token_urlsafe(32) makes; anything else is not ours


@dataclass(frozen=True)
class Rotated:
    user_id: str
    refresh_token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class RefreshTokens:
    """Issues, rotates and revokes refresh tokens; store errors (StoreError) pass through."""

    def __init__(self, store: RefreshTokenStore, ttl_s: int, clock: Clock):
        if ttl_s <= 0:
            raise ValueError("the refresh token TTL must be positive (RAYCHAT_REFRESH_TOKEN_TTL_S)")
        self._store = store
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    async def issue(self, user_id: str, family_id: str | None = None) -> str:
        """A new token for ``user_id``: the first of a new family unless ``family_id`` is given."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = utc(self._clock.now())
        await self._store.insert({"token_hash": token_hash(token), "family_id": family_id or new_id("rf"),
                                  "user_id": user_id, "created_at": now, "expires_at": now + self._ttl})
        return token

    async def rotate(self, presented: str) -> Rotated:
        """Spend ``presented`` and return its successor; Unauthorized if it is not a live token."""
        old = await self._find(presented)
        if old is None:
            raise Unauthorized("refresh token is not valid")
        if old["spent"] or old["revoked"]:
            await self._reused(old)
        if old["expires_at"] <= utc(self._clock.now()):
            raise Unauthorized("refresh token has expired")
        successor = await self.issue(old["user_id"], old["family_id"])
        if not await self._store.spend(old["token_hash"], token_hash(successor), utc(self._clock.now())):
            await self._reused(old)
        return Rotated(old["user_id"], successor)

    async def revoke(self, presented: str) -> None:
        """Log out: revoke the family of ``presented``. A token that is not ours changes nothing."""
        old = await self._find(presented)
        if old is not None:
            await self._store.revoke_family(old["family_id"])

    async def _find(self, presented: str) -> dict | None:
        if not isinstance(presented, str) or not _FORMAT.fullmatch(presented):
            return None
        return await self._store.get(token_hash(presented))

    async def _reused(self, old: dict) -> None:
        revoked = await self._store.revoke_family(old["family_id"])
        # Never the token itself: the family id is enough to find the sessions involved.
        log.warning("refresh token reused: family %s of user %s revoked (%d tokens newly revoked)",
                    old["family_id"], old["user_id"], revoked)
        raise Unauthorized("refresh token was already used: log in again")
