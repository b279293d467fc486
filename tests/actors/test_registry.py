import asyncio

import pytest

from actors.registry import PassivationReason, Registry
from raychat.clock import FakeClock
from raychat.errors import Unavailable


class Probe:
    batchable = frozenset()
    activations = 0
    fail_next = False

    def __init__(self, ident, log):
        self.ident = ident
        self.log = log
        self.busy = False
        self.pinned = False

    async def on_activate(self):
        if Probe.fail_next:
            Probe.fail_next = False
            raise Unavailable("store down")
        Probe.activations += 1
        self.log.append(("activate", self.ident))

    async def on_passivate(self, reason):
        self.log.append(("passivate", self.ident, reason))

    async def handle(self, method, arg):
        self.log.append((method, self.ident, arg))
        return arg

    async def handle_batch(self, method, args):
        return args

    def can_passivate(self):
        return not self.pinned


@pytest.fixture
def setup():
    log = []
    clock = FakeClock()
    reg = Registry({"probe": lambda i: Probe(i, log)}, clock, idle_after_s=60, mailbox_capacity=100)
    Probe.activations = 0
    Probe.fail_next = False
    return reg, clock, log


async def test_first_message_activates_before_it_is_handled(setup):
    reg, clock, log = setup
    assert await reg.call("probe", "a", "hi", 1) == 1
    assert log == [("activate", "a"), ("hi", "a", 1)]
    assert reg.count("probe") == 1


async def test_concurrent_first_messages_activate_once(setup):
    reg, clock, log = setup
    await asyncio.gather(*(reg.call("probe", "a", "m", i) for i in range(20)))
    assert Probe.activations == 1


async def test_idle_actor_is_passivated_with_reason_idle_after_the_timeout(setup):
    reg, clock, log = setup
    await reg.call("probe", "a", "m", 1)
    clock.advance(59)
    assert await reg.sweep() == []
    clock.advance(2)
    assert await reg.sweep() == [("probe", "a")]
    assert log[-1] == ("passivate", "a", PassivationReason.IDLE)
    assert reg.count() == 0


async def test_activity_postpones_passivation(setup):
    reg, clock, log = setup
    await reg.call("probe", "a", "m", 1)
    clock.advance(50)
    await reg.call("probe", "a", "m", 2)
    clock.advance(50)
    assert await reg.sweep() == []


async def test_an_actor_that_refuses_is_kept(setup):
    reg, clock, log = setup
    await reg.call("probe", "a", "m", 1)
    reg.peek("probe", "a").pinned = True
    clock.advance(3600)
    assert await reg.sweep() == []


async def test_next_message_after_passivation_activates_afresh(setup):
    reg, clock, log = setup
    await reg.call("probe", "a", "m", 1)
    clock.advance(61)
    await reg.sweep()
    await reg.call("probe", "a", "m", 2)
    assert Probe.activations == 2


async def test_failed_activation_fails_that_message_and_the_next_one_retries(setup):
    reg, clock, log = setup
    Probe.fail_next = True
    with pytest.raises(Unavailable):
        await reg.call("probe", "a", "m", 1)
    assert reg.peek("probe", "a") is None
    assert await reg.call("probe", "a", "m", 2) == 2
    assert Probe.activations == 1


async def test_peek_never_activates(setup):
    reg, clock, log = setup
    assert reg.peek("probe", "nobody") is None
    assert reg.count() == 0
