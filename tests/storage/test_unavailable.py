"""A down or stalled server makes every call raise StoreUnavailable within the timeout,
and the same adapter works again once the server is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from storage.embedded import EmbeddedServer, free_port, start_mongo, start_redis
from storage.errors import StoreUnavailable
from storage.mongo import MongoStores
from storage.redis_store import RedisPresence

TIMEOUT_MS = 500
MARGIN_S = 2.5           # scheduling slack on a busy 2-core machine; a hang would take far longer
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
USER = {"user_id": "u1", "username": "alice", "password_hash": "h", "display_name": "A", "created_at": NOW}


async def fails_fast(call: Awaitable[Any]) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await call
    assert time.monotonic() - started < TIMEOUT_MS / 1000 + MARGIN_S


async def eventually(call: Callable[[], Awaitable[Any]], within_s: float = 15.0) -> Any:
    """The first answer of ``call`` once the server is back (it may take a probe or two)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def stopped(server: EmbeddedServer) -> str:
    server.stop()
    return server.uri


@pytest.fixture(scope="module")
def dead_mongo_uri() -> str:
    return stopped(start_mongo())


@pytest.fixture(scope="module", params=["single", "cluster"])
def dead_redis_uri(request) -> str:
    if request.param == "cluster":
        return f"redis+cluster://127.0.0.1:{free_port()}"
    return stopped(start_redis())


@pytest.fixture
def fresh_mongo() -> Iterator[EmbeddedServer]:
    server = start_mongo()
    yield server
    os.kill(server.pid, signal.SIGCONT)        # a stalled server cannot act on SIGTERM
    server.stop()


@pytest.fixture
def fresh_redis() -> Iterator[EmbeddedServer]:
    server = start_redis()
    yield server
    os.kill(server.pid, signal.SIGCONT)
    server.stop()


MONGO_CALLS: dict[str, Callable[[MongoStores], Awaitable[Any]]] = {
    "ping": lambda s: s.ping(),
    "ensure_indexes": lambda s: s.ensure_indexes(),
    "events.append": lambda s: s.events.append([{"conversation_id": "c", "seq": 1, "sender_id": "u1",
                                                 "client_msg_id": None, "created_at": NOW}]),
    "events.read_after": lambda s: s.events.read_after("c", 0, 10),
    "events.last_seq": lambda s: s.events.last_seq("c"),
    "conversations.create": lambda s: s.conversations.create(
        {"conversation_id": "c", "members": ["u1"], "created_at": NOW}, direct_key="k"),
    "conversations.list_for_user": lambda s: s.conversations.list_for_user("u1", None, 10),
    "conversations.save_progress": lambda s: s.conversations.save_progress("c", {"state_seq": 1}),
    "conversations.set_reads": lambda s: s.conversations.set_reads("c", {"u1": (1, 1)}),
    "events.get": lambda s: s.events.get("c", 1),
    "events.set_reaction": lambda s: s.events.set_reaction("c", 1, "u1", "x", True),
    "events.search": lambda s: s.events.search(["c"], ["word"], None, 20),
    "events.attached_elsewhere": lambda s: s.events.attached_elsewhere("c", "m1", 1),
    "media.release": lambda s: s.media.release("m1", "c"),
    "conversations.ids_for_member": lambda s: s.conversations.ids_for_member("u1", 10),
    "users.create": lambda s: s.users.create(USER),
    "users.by_username": lambda s: s.users.by_username("alice"),
    "users.update_profile": lambda s: s.users.update_profile("u1", {"display_name": "A"}),
    "blocks.block": lambda s: s.blocks.block("u1", "u2", NOW),
    "blocks.between": lambda s: s.blocks.between("u1", "u2"),
    "keys.add_prekeys": lambda s: s.keys.add_prekeys("u1", "ik", [{"key_id": 1, "public_key": "pk"}]),
    "keys.claim_prekey": lambda s: s.keys.claim_prekey("u1", "ik", NOW),
}

PRESENCE_CALLS: dict[str, Callable[[RedisPresence], Awaitable[Any]]] = {
    "ping": lambda p: p.ping(),
    "set_online": lambda p: p.set_online("u1", 30),
    "refresh": lambda p: p.refresh(["u1", "u2"], 30),
    "set_offline": lambda p: p.set_offline("u1", NOW),
    "get": lambda p: p.get(["u1", "u2"]),
}


@pytest.mark.parametrize("call", MONGO_CALLS.values(), ids=MONGO_CALLS.keys())
async def test_mongo_call_fails_fast_when_the_server_is_down(dead_mongo_uri, call):
    stores = MongoStores(dead_mongo_uri, "raychat", timeout_ms=TIMEOUT_MS)
    try:
        await fails_fast(call(stores))
    finally:
        await stores.close()


@pytest.mark.parametrize("call", PRESENCE_CALLS.values(), ids=PRESENCE_CALLS.keys())
async def test_presence_call_fails_fast_when_the_server_is_down(dead_redis_uri, call):
    presence = RedisPresence(dead_redis_uri, timeout_s=TIMEOUT_MS / 1000)
    try:
        await fails_fast(call(presence))
    finally:
        await presence.close()


async def test_mongo_call_times_out_when_the_server_stalls(fresh_mongo):
    """A server that accepts but never answers (SIGSTOP) costs the timeout, not a hang."""
    stores = MongoStores(fresh_mongo.uri, "raychat", timeout_ms=TIMEOUT_MS)
    try:
        await stores.ping()
        os.kill(fresh_mongo.pid, signal.SIGSTOP)
        await fails_fast(stores.events.read_after("c", 0, 10))
        await fails_fast(stores.users.create(USER))
        os.kill(fresh_mongo.pid, signal.SIGCONT)
        assert await eventually(lambda: stores.events.last_seq("c")) == 0
    finally:
        await stores.close()


async def test_presence_call_times_out_when_the_server_stalls(fresh_redis):
    presence = RedisPresence(fresh_redis.uri, timeout_s=TIMEOUT_MS / 1000)
    try:
        await presence.ping()
        os.kill(fresh_redis.pid, signal.SIGSTOP)
        await fails_fast(presence.get(["u1"]))
        await fails_fast(presence.set_online("u1", 30))
        os.kill(fresh_redis.pid, signal.SIGCONT)
        await eventually(lambda: presence.set_online("u1", 30))
        assert (await presence.get(["u1"]))["u1"]["status"] == "online"
    finally:
        await presence.close()


async def test_mongo_adapter_works_again_after_a_restart(tmp_path: Path):
    server = start_mongo(tmp_path / "db")
    stores = MongoStores(server.uri, "raychat", timeout_ms=TIMEOUT_MS)
    try:
        await stores.ensure_indexes()
        await stores.users.create(USER)
        server.stop()
        await fails_fast(stores.users.by_id("u1"))
        server = start_mongo(tmp_path / "db", port=server.port)
        assert await eventually(lambda: stores.users.by_id("u1")) == USER
    finally:
        await stores.close()
        server.stop()


async def test_presence_adapter_works_again_after_a_restart():
    server = start_redis()
    presence = RedisPresence(server.uri, timeout_s=TIMEOUT_MS / 1000)
    try:
        await presence.set_online("u1", 30)
        server.stop()
        await fails_fast(presence.get(["u1"]))
        server = start_redis(port=server.port)
        await eventually(lambda: presence.set_online("u2", 30))
        # Redis keeps presence in memory only: the restart forgot u1, by design.
        got = await presence.get(["u1", "u2"])
        assert (got["u1"]["status"], got["u2"]["status"]) == ("offline", "online")
    finally:
        await presence.close()
        server.stop()
