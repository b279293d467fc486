"""The MongoDB adapters behind one client: events, conversations, users, blocks, keys,
refresh tokens, OpenID Connect identities, push devices.

Works the same against mongod and the embedded SecantusDB (a single-node replica
set, so ``w="majority"`` is satisfiable). The client is built here, outside any event
loop (a Ray actor's ``__init__``): pymongo's AsyncMongoClient opens nothing until its
first operation and binds to the loop that runs it, so it must then be used from that
one loop only.
"""

from __future__ import annotations

from datetime import timezone

from pymongo import AsyncMongoClient, WriteConcern

from storage.mongo_blocks import MongoBlockStore
from storage.mongo_common import mongo_errors
from storage.mongo_conversations import MongoConversationStore
from storage.mongo_devices import MongoDeviceStore
from storage.mongo_events import MongoEventStore
from storage.mongo_identities import MongoIdentityStore
from storage.mongo_keys import MongoKeyStore
from storage.mongo_media import MongoMediaStore
from storage.mongo_tokens import MongoRefreshTokenStore
from storage.mongo_users import MongoUserStore


class MongoStores:
    def __init__(
        self,
        uri: str,
        db_name: str,
        *,
        write_concern: str = "majority",
        journal: bool = True,
        timeout_ms: int = 3000,
    ):
        # timeoutMS bounds each whole operation (server selection, connection, the
        # server's own work via maxTimeMS, and the driver's one retry), so a down or
        # stuck server costs at most that and never hangs. The older per-phase knobs
        # are set too so nothing falls back to pymongo's 20-30 s defaults.
        options = dict(tz_aware=True, tzinfo=timezone.utc, timeoutMS=timeout_ms,
                       serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        self._client: AsyncMongoClient = AsyncMongoClient(uri, **options)
        # The writes every message causes (its event, the conversation's checkpoint and read
        # cursors) go through a second client without retryable writes; each of those writes
        # is safe to send twice and re-sends itself once (mongo_common.resending, the event
        # store's _id check). Why: SecantusDB keeps a record per retryable write for 30 min and
        # scans them all, and sorts them once there are 10,000, on every retryable write: past
        # 10,000 writes an insert costs it 8.5 ms of CPU instead of 0.73 (bench/README.md,
        # "Retryable writes"), which capped the whole store near 120 writes/s. A real mongod
        # keeps those records in an index; there, one client with retryable writes would do.
        self._hot: AsyncMongoClient = AsyncMongoClient(uri, retryWrites=False, **options)
        w: int | str = int(write_concern) if write_concern.isdigit() else write_concern
        concern = WriteConcern(w=w, j=journal)
        # Note: SecantusDB acknowledges j=True without an fsync per commit unless it runs
        # with --sync-on-commit (storage.embedded's sync_on_commit); mongod honours it.
        db = self._client.get_database(db_name, write_concern=concern)
        hot = self._hot.get_database(db_name, write_concern=concern)
        self.events = MongoEventStore(hot["events"], timeout_ms / 1000)
        self.conversations = MongoConversationStore(db["conversations"], hot["conversations"], timeout_ms / 1000,
                                                    progress=hot["conversation_progress"])
        self.users = MongoUserStore(db["users"])
        self.blocks = MongoBlockStore(db["blocks"])
        self.keys = MongoKeyStore(db["key_bundles"], db["one_time_prekeys"])
        self.refresh_tokens = MongoRefreshTokenStore(db["refresh_tokens"])
        self.identities = MongoIdentityStore(db["identities"])
        self.devices = MongoDeviceStore(db["devices"])
        self.media = MongoMediaStore(db["media"])

    async def ensure_indexes(self) -> None:
        """Create every index the stores rely on; safe to run at every start."""
        for store in (self.events, self.conversations, self.users, self.blocks, self.keys,
                      self.refresh_tokens, self.identities, self.devices, self.media):
            await store.ensure_indexes()

    async def ping(self) -> None:
        with mongo_errors():
            await self._client.admin.command("ping")

    async def close(self) -> None:
        await self._client.close()
        await self._hot.close()
