"""Accounts: registration, login (password or OpenID Connect), tokens, profiles and presence reads."""

from __future__ import annotations

import secrets
from typing import Any

from actors.events import utc
from raychat.clock import Clock, iso
from raychat.config import Settings
from raychat.errors import Conflict, Invalid, NotFound, Unauthorized

from storage.errors import DuplicateKey

from .accounts import check_display_name, check_password, derive_username, normalize_username
from .oidc import OidcIdentity, OidcVerifier
from .passwords import PasswordHasher
from .refresh_tokens import RefreshTokens
from .service_common import new_id, store_errors
from .tokens import Access, TokenIssuer

USERNAME_TRIES = 8   # a derived username that is taken gets a random suffix, this many times at most


class AccountService:
    def __init__(self, settings: Settings, stores: Any, presence: Any, tokens: TokenIssuer,
                 hasher: PasswordHasher, clock: Clock, *, oidc: OidcVerifier | None = None):
        self.settings = settings
        self.stores = stores
        self.presence = presence
        self.tokens = tokens
        self.hasher = hasher
        self.clock = clock
        self.refresh_tokens = RefreshTokens(stores.refresh_tokens, settings.refresh_token_ttl_s, clock)
        self.oidc = oidc            # None: no issuer configured, OpenID Connect login is off

    async def register(self, username: str, password: str, display_name: str | None) -> dict[str, Any]:
        name = normalize_username(username)
        check_password(password)
        shown = check_display_name(display_name) if display_name is not None else name
        user = {"user_id": new_id("u"), "username": name, "display_name": shown,
                "password_hash": await self.hasher.hash_async(password), "created_at": utc(self.clock.now())}
        try:
            async with store_errors():
                await self.stores.users.create(user)
        except Conflict:
            raise Conflict("username: already taken") from None
        return {"user_id": user["user_id"], "username": name}

    async def login(self, username: str, password: str) -> dict[str, Any]:
        try:
            name = normalize_username(username)
        except Invalid:
            name = None
        user = None
        if name is not None:
            async with store_errors():
                user = await self.stores.users.by_username(name)
        # Unknown users still pay for a hash, so timing does not tell them apart. An account made
        # by OpenID Connect has no password hash: it is checked like an unknown user, and fails.
        ok = await self.hasher.verify_async(user.get("password_hash") if user else None, password)
        if user is None or not ok:
            raise Unauthorized("wrong username or password")
        return await self._token_pair(user["user_id"])

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Spend ``refresh_token`` for a new pair (gateway/refresh_tokens.py has the rules)."""
        async with store_errors():
            rotated = await self.refresh_tokens.rotate(refresh_token)
        return self._pair(rotated.user_id, rotated.refresh_token)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the family of ``refresh_token``. Access tokens already out live until they expire."""
        async with store_errors():
            await self.refresh_tokens.revoke(refresh_token)

    async def login_oidc(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """A token pair for the user linked to the ID token's (iss, sub); the first login makes one."""
        if self.oidc is None:
            raise Unauthorized("OpenID Connect login is not configured on this server")
        who = await self.oidc.verify(id_token, nonce)
        async with store_errors():
            user_id = await self._user_for(who)
        return await self._token_pair(user_id)

    def authenticate(self, token: str | None) -> str:
        return self.access(token).user_id

    def access(self, token: str | None) -> Access:
        """The user a valid access token names and when it expires; else Unauthorized."""
        if not token:
            raise Unauthorized("missing bearer token")
        return self.tokens.check(token)

    async def _token_pair(self, user_id: str) -> dict[str, Any]:
        """A new access token and the first refresh token of a new family: a new login."""
        async with store_errors():
            refresh_token = await self.refresh_tokens.issue(user_id)
        return self._pair(user_id, refresh_token)

    def _pair(self, user_id: str, refresh_token: str) -> dict[str, Any]:
        token, ttl = self.tokens.issue(user_id)
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "refresh_token": refresh_token,
                "user_id": user_id}

    async def _user_for(self, who: OidcIdentity) -> str:
        """The user linked to ``who``, linking a new one first if there is none.

        The link is written before the user, under a fresh user id: of concurrent first logins the
        store keeps one link, and all of them continue with its user id. A user missing behind a
        link (a first login that stopped in between) is made by the next login.
        """
        link = await self.stores.identities.find(who.issuer, who.subject)
        if link is None:
            link = await self.stores.identities.link({"issuer": who.issuer, "subject": who.subject,
                                                       "user_id": new_id("u"), "created_at": utc(self.clock.now())})
        if await self.stores.users.by_id(link["user_id"]) is None:
            await self._create_linked_user(link["user_id"], who)
        return link["user_id"]

    async def _create_linked_user(self, user_id: str, who: OidcIdentity) -> None:
        base = derive_username(who.preferred_username or (who.email or "").partition("@")[0])
        try:
            shown = check_display_name(who.name) if who.name else None
        except Invalid:
            shown = None
        for attempt in range(USERNAME_TRIES):
            name = base if attempt == 0 else f"{base}-{secrets.token_hex(3)}"
            user = {"user_id": user_id, "username": name, "display_name": shown or name,
                    "password_hash": None, "created_at": utc(self.clock.now())}
            try:
                await self.stores.users.create(user)
                return
            except DuplicateKey as exc:
                if exc.key == "user_id":
                    return          # a concurrent first login of the same identity made it
        raise Conflict("username: no free username could be derived; retry")

    async def profile(self, user_id: str, *, private: bool = False) -> dict[str, Any]:
        async with store_errors():
            user = await self.stores.users.by_id(user_id)
        if user is None:
            raise NotFound("no such user")
        return _profile_wire(user, private)

    async def profile_by_username(self, username: str) -> dict[str, Any]:
        """The public profile of the user with that username, normalized as at login (so "Alice"
        finds "alice"); NotFound if there is none. How a client turns a name into a user_id."""
        name = normalize_username(username)
        async with store_errors():
            user = await self.stores.users.by_username(name)
        if user is None:
            raise NotFound("no such user")
        return _profile_wire(user, private=False)

    async def update_profile(self, user_id: str, display_name: str | None) -> dict[str, Any]:
        """Apply the fields given (None leaves one as it is); answer the caller's own profile."""
        changes: dict[str, Any] = {}
        if display_name is not None:
            changes["display_name"] = check_display_name(display_name)
        async with store_errors():
            user = await self.stores.users.update_profile(user_id, changes)
        if user is None:
            raise NotFound("no such user")
        return _profile_wire(user, private=True)

    async def presence_of(self, user_ids: list[str]) -> dict[str, Any]:
        async with store_errors():
            found = await self.presence.get(user_ids)
        # last_seen is null while online, as in presence frames: the store keeps the last sign-off
        # through a new session, and a client would show "last seen" beside "online".
        return {u: {"status": p["status"],
                    "last_seen": iso(p["last_seen"]) if p.get("last_seen") and p["status"] != "online" else None}
                for u, p in found.items()}


def _profile_wire(user: dict[str, Any], private: bool) -> dict[str, Any]:
    """Public fields only; the owner also sees created_at. Never the password hash."""
    out = {"user_id": user["user_id"], "username": user["username"], "display_name": user.get("display_name")}
    if private:
        out["created_at"] = iso(user["created_at"])
    return out
