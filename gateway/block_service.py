"""Blocking (PROTOCOL.md, "Accounts"; docs/protocol.md, "Changes").

A block has a direction, but its effect does not: while either user blocks the other,
neither can open a direct conversation with the other nor send in their existing one.
The blocker must unblock to write again; otherwise they could message someone who
cannot answer. Group conversations are unaffected: a group has other members, and
leaving it is the tool there. Blocks are read from the store on every check, never
cached, so an unblock takes effect at once on every replica.
"""

from __future__ import annotations

from typing import Any

from actors.events import utc
from raychat.clock import Clock
from raychat.errors import Forbidden, Invalid, NotFound

from .service_common import store_errors

MAX_BLOCKS = 1000       # per user; GET /v1/users/me/blocks then always fits one answer


class BlockService:
    def __init__(self, stores: Any, clock: Clock):
        self.stores = stores
        self.clock = clock

    async def block(self, user_id: str, target: str) -> None:
        """Idempotent. Blocking oneself is invalid; an unknown user is not_found."""
        if target == user_id:
            raise Invalid("user_id: you cannot block yourself")
        async with store_errors():
            if await self.stores.users.by_id(target) is None:
                raise NotFound("no such user")
            blocked = await self.stores.blocks.list_blocked(user_id, MAX_BLOCKS)
            # The cap is checked before the write, so racing blocks may pass it by a few:
            # it bounds abuse, it is not an invariant anything relies on.
            if len(blocked) >= MAX_BLOCKS and target not in blocked:
                raise Invalid(f"user_id: at most {MAX_BLOCKS} blocked users")
            await self.stores.blocks.block(user_id, target, utc(self.clock.now()))

    async def unblock(self, user_id: str, target: str) -> None:
        """Idempotent: unblocking someone not blocked (or unknown) is no error."""
        async with store_errors():
            await self.stores.blocks.unblock(user_id, target)

    async def blocked(self, user_id: str) -> dict[str, Any]:
        async with store_errors():
            return {"user_ids": await self.stores.blocks.list_blocked(user_id, MAX_BLOCKS)}

    async def check_direct(self, user_id: str, other: str) -> None:
        """Raise Forbidden if a block either way stands between the two users."""
        async with store_errors():
            blocked = await self.stores.blocks.between(user_id, other)
        if blocked:
            raise Forbidden("a block stands between you and this user")
