"""The key directory for end-to-end encryption (PROTOCOL.md, "Devices and keys").

The server stores and hands out public keys; it never reads them, so every key is an
opaque base64 string. A user's bundle is one identity key, one signed prekey (the
client packs its id, public key and signature into that one string) and a pool of
one-time prekeys, each handed out at most once. Uploading a new identity key retires
the one-time prekeys made under the old one (KeyStore's contract).
"""

from __future__ import annotations

from typing import Any

from actors.events import utc
from raychat.clock import Clock
from raychat.errors import Invalid, NotFound

from .service_common import store_errors

MAX_KEY_CHARS = 4096            # room for post-quantum (ML-KEM-1024, 1568 bytes) public keys in base64
MAX_PREKEYS_PER_UPLOAD = 100
MAX_KEY_ID = 2**31 - 1          # fits a signed 32-bit integer, as Signal-style clients use
BASE64 = r"^[A-Za-z0-9+/_-]+={0,2}$"    # standard or URL-safe alphabet, padding optional


class KeyService:
    def __init__(self, stores: Any, clock: Clock):
        self.stores = stores
        self.clock = clock

    async def upload(self, user_id: str, identity_key: str, signed_prekey: str,
                     prekeys: list[dict[str, Any]]) -> dict[str, int]:
        """Replace the identity key and signed prekey, append the one-time prekeys; answer
        how many one-time prekeys are left for others to claim."""
        ids = [p["key_id"] for p in prekeys]
        if len(set(ids)) != len(ids):
            raise Invalid("one_time_prekeys: each key_id may appear once per upload")
        async with store_errors():
            # The bundle first: prekeys are tagged with its identity key, so a prekey is never
            # claimable before the identity it belongs to is the one being handed out.
            await self.stores.keys.put_bundle(user_id, identity_key, signed_prekey, utc(self.clock.now()))
            await self.stores.keys.add_prekeys(user_id, identity_key, prekeys)
            return {"count": await self.stores.keys.count_prekeys(user_id, identity_key)}

    async def claim_bundle(self, user_id: str) -> dict[str, Any]:
        """The user's bundle with one one-time prekey taken for the caller (null when the
        pool is empty: the sender then falls back to the signed prekey alone)."""
        async with store_errors():
            bundle = await self.stores.keys.get_bundle(user_id)
            if bundle is None:
                raise NotFound("no keys for this user")
            prekey = await self.stores.keys.claim_prekey(user_id, bundle["identity_key"], utc(self.clock.now()))
        return {"user_id": user_id, "identity_key": bundle["identity_key"],
                "signed_prekey": bundle["signed_prekey"], "one_time_prekey": prekey}

    async def count(self, user_id: str) -> dict[str, int]:
        """How many of the caller's one-time prekeys are left: time to upload more when low."""
        async with store_errors():
            bundle = await self.stores.keys.get_bundle(user_id)
            if bundle is None:
                return {"count": 0}
            return {"count": await self.stores.keys.count_prekeys(user_id, bundle["identity_key"])}
