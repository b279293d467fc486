"""DeviceStore on MongoDB: one document per device, ``device_id`` stored as ``_id``.

The unique index is on ``(platform, token_key)``, ``token_key`` being the SHA-256 of the
token, not on the token itself: a webhook URL may be 2 KB and an FCM token 4 KB, past the
1 KB index key limit of older mongod (and a fixed-size key keeps the index small anyway).
The token is stored beside it for sending.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from pymongo.asynchronous.collection import AsyncCollection

from storage.errors import DuplicateKey, StoreUnavailable
from storage.mongo_common import Index, as_stored, ensure, mongo_errors, rename
from storage.ports import Device

_ID = Index("_id_", (("_id", 1),), key="device_id", unique=True, builtin=True)
TOKEN = Index("platform_token", (("platform", 1), ("token_key", 1)), key="token", unique=True)
BY_USER = Index("user_created", (("user_id", 1), ("created_at", 1)))
INDEXES = (_ID, TOKEN, BY_USER)

_FIELDS = {"token_key": 0}
_RACES = 4      # a register that keeps losing to concurrent ones for the same token gives up


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class MongoDeviceStore:
    def __init__(self, collection: AsyncCollection):
        self._devices = collection

    async def ensure_indexes(self) -> None:
        await ensure(self._devices, INDEXES)

    async def register(self, device: Device, max_per_user: int) -> Device:
        key = {"platform": device["platform"], "token_key": token_key(device["token"])}
        doc = {"_id": device["device_id"], "user_id": device["user_id"], "platform": device["platform"],
               "token": device["token"], "token_key": key["token_key"], "created_at": device["created_at"]}
        for _ in range(_RACES):
            with mongo_errors(INDEXES):
                existing = await self._devices.find_one(key)
            if existing is not None and existing["user_id"] == device["user_id"]:
                return _wire(existing)
            if existing is not None:
                # The token moved to another user: the old owner must stop getting their pushes.
                with mongo_errors(INDEXES):
                    await self._devices.delete_one({"_id": existing["_id"], "user_id": existing["user_id"]})
            try:
                with mongo_errors(INDEXES):
                    await self._devices.insert_one(doc)
            except DuplicateKey:
                # A concurrent register of this token won (or our own insert, re-sent after a lost
                # reply, did): read again and answer with what is stored.
                continue
            await self._trim(device["user_id"], max_per_user)
            return _wire(as_stored(doc, self._devices))
        raise StoreUnavailable("device registration kept racing with others; retry")

    async def _trim(self, user_id: str, keep: int) -> None:
        with mongo_errors(INDEXES):
            docs = await (self._devices.find({"user_id": user_id}, {"_id": 1})
                          .sort([("created_at", -1), ("_id", -1)]).to_list())
            extra = [d["_id"] for d in docs[keep:]]
            if extra:
                await self._devices.delete_many({"_id": {"$in": extra}, "user_id": user_id})

    async def list_for_user(self, user_id: str) -> list[Device]:
        with mongo_errors(INDEXES):
            cursor = self._devices.find({"user_id": user_id}, _FIELDS).sort([("created_at", 1), ("_id", 1)])
            docs = await cursor.to_list()
        return [_wire(d) for d in docs]

    async def list_for_users(self, user_ids: Sequence[str]) -> list[Device]:
        if not user_ids:
            return []
        with mongo_errors(INDEXES):
            docs = await self._devices.find({"user_id": {"$in": list(user_ids)}}, _FIELDS).to_list()
        return [_wire(d) for d in docs]

    async def remove(self, device_id: str, user_id: str | None = None) -> bool:
        query = {"_id": device_id} if user_id is None else {"_id": device_id, "user_id": user_id}
        with mongo_errors(INDEXES):
            result = await self._devices.delete_one(query)
        return result.deleted_count > 0

    async def remove_token(self, platform: str, token: str) -> int:
        with mongo_errors(INDEXES):
            result = await self._devices.delete_one({"platform": platform, "token_key": token_key(token)})
        return result.deleted_count


def _wire(doc: dict) -> Device:
    out = rename(doc, "_id", "device_id")
    out.pop("token_key", None)
    return out
