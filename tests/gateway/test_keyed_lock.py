import asyncio
import random

from gateway.keyed_lock import KeyedLock


async def test_holders_of_one_key_run_one_at_a_time_in_arrival_order():
    locks, order, inside = KeyedLock(), [], []

    async def worker(i: int) -> None:
        async with locks.hold("k"):
            inside.append(i)
            assert len(inside) == 1, "two holders at once"
            await asyncio.sleep(random.random() / 100)   # finishes in any order if not serialized
            order.append(i)
            inside.remove(i)

    await asyncio.gather(*(worker(i) for i in range(20)))
    assert order == list(range(20))


async def test_different_keys_do_not_wait_for_each_other():
    locks, held = KeyedLock(), asyncio.Event()

    async def hold_a() -> None:
        async with locks.hold("a"):
            await held.wait()

    task = asyncio.ensure_future(hold_a())
    await asyncio.sleep(0)
    async with locks.hold("b"):
        held.set()
    await task


async def test_a_key_is_forgotten_once_nobody_holds_or_waits():
    locks = KeyedLock()
    await asyncio.gather(*(_hold(locks, "k") for _ in range(3)))
    assert len(locks) == 0


async def test_a_holder_that_raises_releases_the_key():
    locks = KeyedLock()
    try:
        async with locks.hold("k"):
            raise ValueError("boom")
    except ValueError:
        pass
    await asyncio.wait_for(_hold(locks, "k"), 1)
    assert len(locks) == 0


async def _hold(locks: KeyedLock, key: str) -> None:
    async with locks.hold(key):
        await asyncio.sleep(0)
