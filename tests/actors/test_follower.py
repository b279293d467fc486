"""A host following the membership view: it answers only for keys it owns, and hands the
others over (passivates them once their mailbox is idle, sessions without going offline)."""

import asyncio

from actors.follower import MembershipFollower
from actors.membership import View, host_name
from actors.placement import owner
from actors.registry import PassivationReason, Registry
from raychat.clock import FakeClock

ME, OTHER = host_name("a", 0), host_name("b", 0)


class Probe:
    batchable = frozenset()

    def __init__(self, ident, log, gates):
        self.ident, self.log, self.gates = ident, log, gates

    async def on_activate(self):
        pass

    async def on_passivate(self, reason):
        self.log.append((self.ident, reason))

    async def handle(self, method, arg):
        if method == "wait":
            await self.gates[self.ident].wait()
        return arg

    async def handle_batch(self, method, args):
        return args

    def can_passivate(self):
        return False      # like a session with sockets: moving must not depend on this


def setup():
    log, gates = [], {}
    reg = Registry({"user": lambda i: Probe(i, log, gates)}, FakeClock(), idle_after_s=60, mailbox_capacity=100)
    return MembershipFollower(ME, "ns", reg), reg, log, gates


def split(ids, hosts):
    mine = [i for i in ids if owner(("user", i), hosts) == ME]
    return mine, [i for i in ids if i not in mine]


async def test_without_a_view_nothing_is_owned_after_the_wait(monkeypatch):
    import actors.follower as follower
    monkeypatch.setattr(follower, "FIRST_VIEW_WAIT_S", 0.01)
    f, _, _, _ = setup()
    assert not await f.owns(("user", "u1"))


async def test_a_call_waiting_for_the_first_view_is_answered_by_it():
    f, _, _, _ = setup()
    asking = asyncio.ensure_future(f.owns(("user", "u1")))
    await asyncio.sleep(0)
    f.apply(View(1, (ME,)))
    assert await asking


async def test_owns_follows_the_view_and_older_views_are_ignored():
    f, _, _, _ = setup()
    ids = [f"u{i}" for i in range(200)]
    assert f.apply(View(5, (ME, OTHER)))
    mine, theirs = split(ids, (ME, OTHER))
    assert mine and theirs
    assert all([await f.owns(("user", i)) for i in mine])
    assert not any([await f.owns(("user", i)) for i in theirs])
    assert not f.apply(View(4, (ME,)))          # an older view changes nothing
    assert not await f.owns(("user", theirs[0]))
    assert f.apply(View(6, (OTHER,)))            # this host left
    assert not any([await f.owns(("user", i)) for i in mine])


async def test_keys_that_moved_are_passivated_as_moved_and_the_rest_stay():
    f, reg, log, _ = setup()
    f.apply(View(1, (ME,)))
    ids = [f"u{i}" for i in range(100)]
    for i in ids:
        await reg.call("user", i, "hi", i)
    mine, theirs = split(ids, (ME, OTHER))
    f.apply(View(2, (ME, OTHER)))
    await f._mover
    assert sorted(i for i, _ in log) == sorted(theirs)
    assert {r for _, r in log} == {PassivationReason.MOVED}
    assert sorted(k[1] for k in reg.keys()) == sorted(mine)
    assert f.moved_out == len(theirs)


async def test_a_busy_key_moves_once_its_mailbox_drains():
    f, reg, log, gates = setup()
    f.apply(View(1, (ME,)))
    _, theirs = split([f"u{i}" for i in range(50)], (ME, OTHER))
    busy = theirs[0]
    gates[busy] = asyncio.Event()
    running = asyncio.ensure_future(reg.call("user", busy, "wait", "done"))
    await asyncio.sleep(0)
    f.apply(View(2, (ME, OTHER)))
    await asyncio.sleep(0.12)
    assert ("user", busy) in reg.keys() and log == []     # never under a running handler
    gates[busy].set()
    assert await running == "done"
    await asyncio.wait_for(f._mover, 2)
    assert log == [(busy, PassivationReason.MOVED)]
