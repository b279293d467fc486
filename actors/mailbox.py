"""A bounded mailbox: messages are handled one at a time, in arrival order.

No task exists while the mailbox is empty, so an idle actor costs only its
state: the drain task is started by the first message and ends with the last.
Consecutive messages of a batchable method are handed over together, which is
how a conversation group-commits its writes while staying one-at-a-time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable, Collection

from raychat.errors import ChatError, Internal, RateLimited

Handler = Callable[[str, Any], Awaitable[Any]]
BatchHandler = Callable[[str, list[Any]], Awaitable[list[Any]]]


class Mailbox:
    __slots__ = ("_handler", "_batch_handler", "_batchable", "_capacity", "_queue", "_task", "on_error")

    def __init__(self, handler: Handler, capacity: int, *, batch_handler: BatchHandler | None = None,
                 batchable: Collection[str] = ()):
        self._handler = handler
        self._batch_handler = batch_handler
        self._batchable = batchable
        self._capacity = capacity
        self._queue: deque = deque()
        self._task: asyncio.Task | None = None
        self.on_error: Callable[[BaseException], None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        return not self._queue and self._task is None

    def post(self, method: str, arg: Any) -> asyncio.Future:
        """Enqueue; the future resolves with the handler's result or exception.

        A full mailbox refuses at once with RateLimited instead of growing.
        """
        if len(self._queue) >= self._capacity:
            raise RateLimited("mailbox full, retry shortly", retry_after_ms=200)
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((method, arg, fut))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return fut

    async def _drain(self) -> None:
        try:
            while self._queue:
                method, arg, fut = self._queue.popleft()
                if method in self._batchable and self._batch_handler is not None:
                    batch = [(arg, fut)]
                    while self._queue and self._queue[0][0] == method:
                        _, a, f = self._queue.popleft()
                        batch.append((a, f))
                    await self._run_batch(method, batch)
                else:
                    await self._run_one(method, arg, fut)
        finally:
            self._task = None

    async def _run_one(self, method: str, arg: Any, fut: asyncio.Future) -> None:
        try:
            result = await self._handler(method, arg)
        except ChatError as exc:
            _settle(fut, exc=exc)
        except BaseException as exc:  # a bug in a handler must not kill the mailbox
            self._report(exc)
            _settle(fut, exc=Internal("internal error"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            _settle(fut, result=result)

    async def _run_batch(self, method: str, batch: list) -> None:
        try:
            results = await self._batch_handler(method, [a for a, _ in batch])
        except ChatError as exc:
            for _, fut in batch:
                _settle(fut, exc=exc)
        except BaseException as exc:
            self._report(exc)
            for _, fut in batch:
                _settle(fut, exc=Internal("internal error"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            for (_, fut), res in zip(batch, results):
                if isinstance(res, BaseException):
                    _settle(fut, exc=res)
                else:
                    _settle(fut, result=res)

    def _report(self, exc: BaseException) -> None:
        if self.on_error is not None and not isinstance(exc, asyncio.CancelledError):
            self.on_error(exc)


def _settle(fut: asyncio.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
