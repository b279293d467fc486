"""Accounts: registration, login, tokens, profiles and presence reads."""

from __future__ import annotations

from typing import Any

from actors.events import utc
from raychat.clock import Clock, iso
from raychat.config import Settings
from raychat.errors import Conflict, Invalid, NotFound, Unauthorized

from .accounts import check_display_name, check_password, normalize_username
from .passwords import PasswordHasher
from .service_common import new_id, store_errors
from .tokens import TokenIssuer


class AccountService:
    def __init__(self, settings: Settings, stores: Any, presence: Any, tokens: TokenIssuer,
                 hasher: PasswordHasher, clock: Clock):
        self.settings = settings
        self.stores = stores
        self.presence = presence
        self.tokens = tokens
        self.hasher = hasher
        self.clock = clock

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
        # Unknown users still pay for a hash, so timing does not tell them apart.
        ok = await self.hasher.verify_async(user["password_hash"] if user else None, password)
        if user is None or not ok:
            raise Unauthorized("wrong username or password")
        token, ttl = self.tokens.issue(user["user_id"])
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "user_id": user["user_id"]}

    def authenticate(self, token: str | None) -> str:
        if not token:
            raise Unauthorized("missing bearer token")
        return self.tokens.verify(token)

    async def profile(self, user_id: str, *, private: bool = False) -> dict[str, Any]:
        async with store_errors():
            user = await self.stores.users.by_id(user_id)
        if user is None:
            raise NotFound("no such user")
        out = {"user_id": user["user_id"], "username": user["username"], "display_name": user.get("display_name")}
        if private:
            out["created_at"] = iso(user["created_at"])
        return out

    async def presence_of(self, user_ids: list[str]) -> dict[str, Any]:
        async with store_errors():
            found = await self.presence.get(user_ids)
        return {u: {"status": p["status"], "last_seen": iso(p["last_seen"]) if p.get("last_seen") else None}
                for u, p in found.items()}
