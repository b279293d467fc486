"""How a conversation actor checkpoints, on the real store.

Every write of a conversation document re-indexes its members array (SecantusDB rewrites all of a
document's index entries), so a message must not rewrite the roster, cursors ride in the same
write, and the document (the list position) is written at most once per listing gap; every flush
goes to the progress document.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from actors.conversation import ConversationActor, checkpoint_gap_s, listing_gap_s
from actors.registry import PassivationReason
from actors.conversation_state import SendCommand
from raychat.errors import Invalid
from bench.actor_mem import build_env
from raychat.clock import FakeClock


class Recording:
    """The real conversation store, recording each checkpoint it is asked to write."""

    def __init__(self, inner):
        self._inner = inner
        self.saves: list[tuple[dict, dict | None]] = []
        self.full: list[bool] = []
        self.cursor_writes = 0
        self.dead = False           # the process is dying: checkpoints never reach the store

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def save_progress(self, cid, progress, reads=None, *, full=True):
        if self.dead:
            await asyncio.Event().wait()
        self.saves.append((dict(progress), dict(reads) if reads else None))
        self.full.append(full)
        await self._inner.save_progress(cid, progress, reads, full=full)

    async def set_reads(self, cid, reads):
        self.cursor_writes += 1
        await self._inner.set_reads(cid, reads)


async def make_actor(mongo_stores, presence, members: int):
    users = [f"u{n}" for n in range(members)]
    now = datetime.now(timezone.utc)
    await mongo_stores.conversations.create({
        "conversation_id": "c1", "kind": "group", "title": "t", "members": users,
        "roles": {u: ("owner" if k == 0 else "member") for k, u in enumerate(users)},
        "created_at": now, "last_seq": 0, "last_activity_at": now})
    env = build_env(mongo_stores, presence, FakeClock())
    recording = Recording(mongo_stores.conversations)
    env.conversations = recording
    actor = ConversationActor("c1", env)
    await actor.on_activate()
    return actor, recording, users


async def settle(actor: ConversationActor) -> None:
    while actor._flusher is not None:
        await actor._flusher


def test_checkpoint_gap_grows_with_the_group_and_is_capped():
    assert checkpoint_gap_s(2) == checkpoint_gap_s(100) == 0.0
    assert checkpoint_gap_s(101) == pytest.approx(1.01)
    assert checkpoint_gap_s(500) == pytest.approx(5.0)
    assert checkpoint_gap_s(100_000) == 10.0
    assert listing_gap_s(2) == listing_gap_s(100) == 1.0 and listing_gap_s(500) == pytest.approx(5.0)


async def listed(mongo_stores) -> dict:
    """The conversation document alone, as the list reads its position."""
    return await mongo_stores.conversations._conversations.find_one({"_id": "c1"})


async def test_a_message_does_not_rewrite_the_roster(mongo_stores, presence):
    actor, rec, users = await make_actor(mongo_stores, presence, 3)
    for n in range(3):
        await actor.handle_batch("send", [SendCommand(sender_id=users[n], client_msg_id=f"m{n}", body="hi")])
        await settle(actor)
    assert "members" in rec.saves[0][0]                  # the first checkpoint of this activation
    assert all("members" not in p and "title" not in p for p, _ in rec.saves[1:])
    assert len(rec.saves) >= 2
    # Each sender's cursor rode in the checkpoint of their message: no separate cursor write.
    assert rec.cursor_writes == 0
    doc = await mongo_stores.conversations.get("c1")
    assert doc["members"] == users and doc["last_seq"] == 3 and doc["message_count"] == 3
    assert doc["reads"][users[2]] == {"seq": 3, "count": 3}


async def test_a_roster_change_is_checkpointed(mongo_stores, presence):
    actor, rec, users = await make_actor(mongo_stores, presence, 3)
    await actor.handle_batch("send", [SendCommand(sender_id=users[0], client_msg_id="m0", body="hi")])
    await settle(actor)
    actor.state.title = "renamed"
    await actor.handle_batch("send", [SendCommand(sender_id=users[0], client_msg_id="m1", body="hi")])
    await settle(actor)
    assert rec.saves[-1][0]["title"] == "renamed"
    assert (await mongo_stores.conversations.get("c1"))["title"] == "renamed"


async def test_a_burst_writes_the_list_position_at_most_once_per_gap_and_ends_in_it(mongo_stores, presence):
    actor, rec, users = await make_actor(mongo_stores, presence, 120)     # 1.2 s between writes
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(10):
        await actor.handle_batch("send", [SendCommand(sender_id=users[n], client_msg_id=f"m{n}", body="hi")])
        await asyncio.sleep(0.01)
    fresh = await mongo_stores.conversations.get("c1")       # the numbers are current at once...
    assert fresh["message_count"] >= 9
    await settle(actor)
    assert rec.full.count(True) == 2                          # ...the document: the first message, then the last
    assert loop.time() - start >= listing_gap_s(120) - 0.05
    doc = await listed(mongo_stores)
    assert doc["last_seq"] == 10 and doc["message_count"] == 10
    assert doc["last_message"]["seq"] == 10
    got = await mongo_stores.conversations.get("c1")
    assert got["last_seq"] == 10 and got["message_count"] == 10
    assert all(got["reads"][users[n]]["seq"] == n + 1 for n in range(10))


async def test_passivation_writes_the_list_position_without_waiting_for_the_gap(mongo_stores, presence):
    actor, rec, users = await make_actor(mongo_stores, presence, 120)
    for n in range(3):
        await actor.handle_batch("send", [SendCommand(sender_id=users[0], client_msg_id=f"m{n}", body="hi")])
    loop = asyncio.get_running_loop()
    start = loop.time()
    await actor.on_passivate(PassivationReason.IDLE)
    assert loop.time() - start < 1.0
    doc = await listed(mongo_stores)
    assert doc["last_seq"] == 3 and doc["last_message"]["seq"] == 3


async def test_a_crash_before_the_checkpoint_loses_no_sender_cursor(mongo_stores, presence):
    """Acknowledged messages whose checkpoint never ran (the host died in between): the next
    activation replays them, and their senders have read them, as if the checkpoint had landed."""
    actor, rec, users = await make_actor(mongo_stores, presence, 3)
    await actor.handle_batch("send", [SendCommand(sender_id=users[0], client_msg_id="m0", body="hi")])
    await settle(actor)                                  # checkpointed: seq 1, u0 read 1
    # The crash: two more messages are stored and acknowledged, and their checkpoint dies with
    # the process (its write never reaches the store).
    rec.dead = True
    out = await actor.handle_batch("send", [SendCommand(sender_id=users[1], client_msg_id="m1", body="hi"),
                                            SendCommand(sender_id=users[0], client_msg_id="m2", body="hi")])
    assert [ev["seq"] for ev in out] == [2, 3]
    await asyncio.sleep(0.05)
    actor._flusher.cancel()
    assert (await mongo_stores.conversations.get("c1"))["state_seq"] == 1

    rec.dead = False
    again = ConversationActor("c1", actor._env)
    await again.on_activate()                            # replays 2 and 3
    got = await mongo_stores.conversations.get("c1")
    assert got["state_seq"] == 3 and got["message_count"] == 3
    assert got["reads"][users[0]] == {"seq": 3, "count": 3}
    assert got["reads"][users[1]] == {"seq": 2, "count": 2}
    assert users[2] not in got["reads"]


async def test_a_draft_the_store_refuses_fails_alone_and_the_batch_stays_gap_free(mongo_stores, presence):
    """One sender's text the store cannot take (a lone surrogate) is refused; the other senders'
    messages in the same batch are stored and acknowledged, with consecutive seqs."""
    actor, _, users = await make_actor(mongo_stores, presence, 3)
    out = await actor.handle_batch("send", [
        SendCommand(sender_id=users[1], client_msg_id="ok1", body="hi"),
        SendCommand(sender_id=users[0], client_msg_id="bad", body="a\ud800b"),
        SendCommand(sender_id=users[2], client_msg_id="ok2", body="hello"),
    ])
    assert [ev["seq"] for ev in (out[0], out[2])] == [1, 2]
    assert isinstance(out[1], Invalid) and out[1].ref == "bad"
    stored = await mongo_stores.events.read_after("c1", 0, 10)
    assert [(ev["seq"], ev["client_msg_id"]) for ev in stored] == [(1, "ok1"), (2, "ok2")]
    again = await actor.handle_batch("send", [SendCommand(sender_id=users[0], client_msg_id="bad", body="ab")])
    assert again[0]["seq"] == 3                        # the refused id is free, the seq next in line


async def test_an_actor_that_did_not_write_the_preview_still_revises_it(mongo_stores, presence):
    """After a passivation the actor has not seen the newest message: its first edit or delete
    of it reads the preview from the store, and the checkpoint carries the revised one."""
    actor, _, users = await make_actor(mongo_stores, presence, 2)
    for n in range(2):
        await actor.handle_batch("send", [SendCommand(sender_id=users[0], client_msg_id=f"m{n}", body=f"text {n}")])
    await settle(actor)
    again = ConversationActor("c1", actor._env)
    await again.on_activate()
    await again.handle("edit", {"user": users[0], "target_seq": 2, "body": "text 1, edited"})
    assert (await mongo_stores.conversations.get("c1"))["last_message"]["body"] == "text 1, edited"
    await again.handle("delete", {"user": users[0], "target_seq": 2})
    last = (await mongo_stores.conversations.get("c1"))["last_message"]
    assert (last["seq"], last["body"], last["deleted"]) == (2, None, True)
