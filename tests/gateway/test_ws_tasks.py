"""The socket's read loop stops receives it will not read without asyncio logging them."""

from __future__ import annotations

import asyncio
import gc

from starlette.websockets import WebSocketDisconnect

from gateway.ws import _drop


async def _disconnected() -> str:
    raise WebSocketDisconnect(1000)


async def test_a_receive_that_already_ended_is_dropped_without_an_unretrieved_error():
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        ended = asyncio.ensure_future(_disconnected())
        await asyncio.sleep(0)               # it runs and ends with the client's close
        assert ended.done()
        _drop(ended)
        del ended
        gc.collect()
        # The control: the same task not dropped is reported, so the check above can fail.
        ignored = asyncio.ensure_future(_disconnected())
        await asyncio.sleep(0)
        del ignored
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert [str(c.get("exception")) for c in reported] == ["1000"]


async def test_a_receive_still_waiting_is_cancelled():
    pending = asyncio.ensure_future(asyncio.sleep(10))
    _drop(pending)
    await asyncio.sleep(0)
    assert pending.cancelled()
