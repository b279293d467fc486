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


async def test_a_read_loop_cancelled_while_waiting_leaves_no_unretrieved_receive():
    """Serve cancels the request once the client is gone; the receive then ends with the close."""
    from types import SimpleNamespace

    from gateway.ws import Session

    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    closed = asyncio.Event()

    async def receive_text() -> str:
        await closed.wait()
        raise WebSocketDisconnect(1000)

    fake = SimpleNamespace(_expire=lambda: asyncio.sleep(3600), _receive_text=receive_text)
    writer = asyncio.ensure_future(asyncio.sleep(3600))
    try:
        loop_task = asyncio.ensure_future(Session._read_loop(fake, writer))
        await asyncio.sleep(0.01)
        loop_task.cancel()
        closed.set()                       # the client's close arrives as the request ends
        for _ in range(5):
            await asyncio.sleep(0)
        del loop_task
        gc.collect()
    finally:
        writer.cancel()
        loop.set_exception_handler(None)
    assert reported == []
