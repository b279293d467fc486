"""ChatService.send before the actor call: order, blocks and e2ee bodies, on the real store.

The host router is replaced by a recorder: what is tested here is what the service submits,
and in which order; the actor side has its own tests.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.chat_service import ChatService
from raychat.clock import FakeClock
from raychat.config import Settings
from raychat.errors import Forbidden, Invalid, TooLarge

T0 = datetime(2030, 1, 2, tzinfo=timezone.utc)


class RecordingRouter:
    """Records each call when it is submitted (as HostRouter submits its Ray call), answers later."""

    admission_window_s = 5.0

    def __init__(self) -> None:
        self.submitted: list[str] = []

    async def call(self, kind: str, ident: str, method: str, arg=None):
        self.submitted.append(arg.body)
        await asyncio.sleep(0)
        return {"seq": len(self.submitted), "body": arg.body}


@pytest.fixture
async def chat(mongo_stores):
    for uid in ("alice", "bob"):
        await mongo_stores.users.create({"user_id": uid, "username": uid, "password_hash": "h",
                                         "display_name": uid, "created_at": T0})
    return ChatService(Settings(max_body_bytes=64), mongo_stores, RecordingRouter(), FakeClock())


async def direct(chat: ChatService, e2ee: bool = False) -> str:
    conv, _ = await chat.create_conversation("alice", "direct", ["bob"], None, e2ee)
    return conv["conversation_id"]


async def test_concurrent_direct_sends_are_submitted_in_the_order_they_arrived(chat):
    """Each waits on store reads (kind, blocks) that finish in any order; submission must not."""
    cid = await direct(chat)
    bodies = [f"m{i}" for i in range(40)]
    await asyncio.gather(*(chat.send("alice", cid, f"k{i}", b) for i, b in enumerate(bodies)))
    assert chat.router.submitted == bodies


async def test_send_in_a_direct_conversation_is_forbidden_while_either_side_blocks(chat, mongo_stores):
    cid = await direct(chat)
    await chat.blocks.block("bob", "alice")
    for sender in ("alice", "bob"):
        with pytest.raises(Forbidden):
            await chat.send(sender, cid, "k", "hi")
    assert chat.router.submitted == []


async def test_unblock_lets_the_next_send_through_at_once(chat):
    cid = await direct(chat)
    await chat.send("alice", cid, "k1", "before")          # the conversation's facts are now cached
    await chat.blocks.block("bob", "alice")
    with pytest.raises(Forbidden):
        await chat.send("alice", cid, "k2", "blocked")
    await chat.blocks.unblock("bob", "alice")
    await chat.send("alice", cid, "k3", "after")
    assert chat.router.submitted == ["before", "after"]


async def test_e2ee_body_is_submitted_untouched_even_if_it_is_only_whitespace(chat):
    cid = await direct(chat, e2ee=True)
    await chat.send("alice", cid, "k", " \t\n")
    assert chat.router.submitted == [" \t\n"]


async def test_plain_body_of_only_whitespace_is_invalid(chat):
    cid = await direct(chat)
    with pytest.raises(Invalid):
        await chat.send("alice", cid, "k", " \t\n")


async def test_e2ee_body_over_the_limit_is_too_large(chat):
    cid = await direct(chat, e2ee=True)
    with pytest.raises(TooLarge):
        await chat.send("alice", cid, "k", "Q" * 65)
    assert chat.router.submitted == []
