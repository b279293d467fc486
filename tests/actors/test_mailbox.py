import asyncio

import pytest

from actors.mailbox import Mailbox
from raychat.errors import Forbidden, Internal, RateLimited


async def test_messages_run_one_at_a_time_in_arrival_order():
    running, peak, seen = 0, 0, []

    async def handler(method, arg):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (arg % 3))   # uneven work must not reorder
        seen.append(arg)
        running -= 1
        return arg * 2

    box = Mailbox(handler, capacity=1000)

    async def caller(start):
        futs = [box.post("m", i) for i in range(start, start + 50)]
        return await asyncio.gather(*futs)

    results = await asyncio.gather(*(caller(s) for s in (0, 50, 100, 150)))
    assert peak == 1
    assert seen == list(range(200))
    assert [r for rs in results for r in rs] == [i * 2 for i in range(200)]


async def test_full_mailbox_refuses_with_rate_limited():
    gate = asyncio.Event()

    async def handler(method, arg):
        await gate.wait()

    box = Mailbox(handler, capacity=3)
    futs = [box.post("m", i) for i in range(3)]
    with pytest.raises(RateLimited) as exc:
        box.post("m", 3)
    assert exc.value.retry_after_ms > 0
    gate.set()
    await asyncio.gather(*futs)
    await box.post("m", 4)   # room again once drained


async def test_consecutive_batchable_messages_arrive_as_one_batch():
    batches = []

    async def handler(method, arg):
        return ("one", arg)

    async def batch_handler(method, args):
        batches.append(list(args))
        return [("batch", a) for a in args]

    box = Mailbox(handler, capacity=100, batch_handler=batch_handler, batchable={"send"})
    futs = [box.post("send", 1), box.post("send", 2), box.post("other", 3), box.post("send", 4)]
    results = await asyncio.gather(*futs)
    assert batches == [[1, 2], [4]]
    assert results == [("batch", 1), ("batch", 2), ("one", 3), ("batch", 4)]


async def test_errors_reach_only_their_caller_and_the_mailbox_goes_on():
    async def handler(method, arg):
        if arg == "forbidden":
            raise Forbidden("no")
        if arg == "bug":
            raise KeyError("bug")
        return arg

    box = Mailbox(handler, capacity=10)
    f1, f2, f3 = box.post("m", "forbidden"), box.post("m", "bug"), box.post("m", "ok")
    with pytest.raises(Forbidden):
        await f1
    with pytest.raises(Internal):
        await f2
    assert await f3 == "ok"


async def test_an_empty_mailbox_holds_no_task():
    async def handler(method, arg):
        return arg

    box = Mailbox(handler, capacity=10)
    assert box.idle
    await box.post("m", 1)
    await asyncio.sleep(0)
    assert box.idle
