"""Presence changes under a mass disconnect: each asks the store who to tell, and thousands of
sessions change at once when a redeploy or a network blip cuts their sockets. Those queries
go through the host's presence lane (a few at a time), off the session's mailbox, and each
user's changes still reach their peers in order."""

from __future__ import annotations

import asyncio
import json

from actors.env import PRESENCE_LANE, ActorEnv
from actors.session import SessionActor
from raychat.clock import FakeClock


class Contacts:
    """direct_peers as the store answers it, slowly, counting how many run at once."""

    def __init__(self, delay_s: float = 0.005):
        self.delay_s = delay_s
        self.running = 0
        self.most = 0
        self.gate: asyncio.Event | None = None

    async def direct_peers(self, user_id: str, limit: int = 10_000) -> list[str]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay_s)
            return [f"peer-of-{user_id}"]
        finally:
            self.running -= 1


class Presence:
    async def set_online(self, user_id: str, ttl_s: int) -> None:
        pass

    async def set_offline(self, user_id: str, at) -> None:
        pass


def env_with(contacts: Contacts, sent: list[tuple[str, str]]) -> ActorEnv:
    def fanout(user_ids, items, *rest) -> None:
        for user in user_ids:
            for _, _, frame, _ in items:
                change = json.loads(frame)
                sent.append((user, f"{change['user_id']}:{change['status']}"))

    return ActorEnv(events=None, conversations=contacts, presence=Presence(), clock=FakeClock(),
                    dedupe_window=100, presence_ttl_s=30, max_group_members=1000,
                    fanout=fanout, call_later=lambda *a: None)


async def settle(sessions: list[SessionActor]) -> None:
    for _ in range(1000):
        if all(getattr(s, "_telling", None) is None for s in sessions):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("presence changes still pending")


async def test_a_mass_disconnect_queries_the_store_a_few_at_a_time_and_tells_everyone():
    contacts, sent = Contacts(), []
    env = env_with(contacts, sent)
    sessions = [SessionActor(f"u{i}", env) for i in range(60)]
    await asyncio.gather(*(s.handle("connect", ("r1", "s1")) for s in sessions))
    await settle(sessions)
    await asyncio.gather(*(s.handle("disconnect", ("r1", "s1")) for s in sessions))
    await asyncio.gather(*(s.handle("grace_over", s._grace_token) for s in sessions))
    await settle(sessions)
    assert contacts.most == PRESENCE_LANE
    for i in range(60):
        assert [c for to, c in sent if to == f"peer-of-u{i}"] == [f"u{i}:online", f"u{i}:offline"]
    assert all(s.can_passivate() for s in sessions)


async def test_a_connect_does_not_wait_for_the_query_and_changes_stay_in_order():
    contacts, sent = Contacts(), []
    env = env_with(contacts, sent)
    user = SessionActor("u1", env)
    contacts.gate = asyncio.Event()                      # the store is slow to answer
    assert await asyncio.wait_for(user.handle("connect", ("r1", "s1")), 1.0) == 1
    assert not user.can_passivate()
    await user.handle("disconnect", ("r1", "s1"))
    await user.handle("grace_over", user._grace_token)   # offline, while online is still unsent
    await asyncio.sleep(0.05)
    assert sent == [] and not user.can_passivate()
    contacts.gate.set()
    await settle([user])
    assert sent == [("peer-of-u1", "u1:online"), ("peer-of-u1", "u1:offline")]
    assert user.can_passivate()
