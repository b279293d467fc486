"""Calls to a host over a TCP connection of their own, instead of Ray actor calls.

Why: a Ray actor call costs ~1.1–1.6 ms of CPU on its two sides, the same payload over a
socket ~0.1 ms (``python -m bench.ray_hops``), and every message crossed two of them: the
gateway's ``call_many`` to the owner of its conversation, and that host's ``deliver`` to the
host of each recipient's session. Both now travel here; Ray still starts, finds and
supervises the hosts, and tells the caller where each listens and with which token
(``ActorHost.fanout_endpoint``): a connection is only as trusted as that call.

On the wire, after the fan-out stream's hello with ``"rpc": true`` and a random ``nonce``
(actors/fanout_wire.py):
- the host proves it holds the token too: 4-byte length, then JSON ``{"proof": hex}``, the
  HMAC-SHA256 of the nonce under the token. Each side has then shown the other the secret Ray
  handed out, so each may unpickle what the other sends, as Ray's own calls do;
- then requests, 4-byte length + pickle of ``(id, method, args)``, and answers in any order,
  ``(id, True, result)`` or ``(id, False, message)``. Only the methods in ``METHODS`` are called.

A connection that breaks fails every call in flight with ``LinkBroken``; the caller looks the
host up again and retries, as it did after a Ray ``ActorDiedError``. A call the host had
already run may so run twice, as with Ray: a send carries its ``client_msg_id``, and a
delivery that arrives twice changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import pickle
import secrets
from typing import Any

from . import fanout_wire as wire

METHODS = frozenset({"call_many", "deliver"})
MAX_MESSAGE = 64 * 1024 * 1024      # far above any real call: a guard against a stream gone mad
_PROOF_MAX = 1024


class LinkBroken(ConnectionError):
    """The connection to the host ended (or never opened) before the answer came."""


def proof(token: str, nonce: str) -> str:
    return hmac.new(token.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def rpc_hello(caller: str, token: str, nonce: str) -> bytes:
    return wire.framed(json.dumps({"replica": caller, "token": token, "rpc": True, "nonce": nonce}).encode())


def proof_frame(token: str, nonce: str) -> bytes:
    return wire.framed(json.dumps({"proof": proof(token, nonce)}).encode())


def message(obj: Any) -> bytes:
    return wire.framed(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


async def read_message(reader: asyncio.StreamReader) -> Any:
    return pickle.loads(await wire.read_framed(reader, MAX_MESSAGE))


class HostLink:
    """One caller's connection to one host: calls in flight at once, each answered by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._broken: BaseException | None = None
        self._heard = asyncio.get_running_loop().time()     # when the host last answered anything
        self._answers = asyncio.get_running_loop().create_task(self._read_answers())

    @classmethod
    async def open(cls, where: dict[str, Any], caller: str, timeout_s: float = 5.0) -> "HostLink":
        """Connect to ``where`` (``fanout_endpoint``'s answer) and check the host's proof."""
        nonce = secrets.token_urlsafe(16)
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(where["host"], where["port"]), timeout_s)
            writer.write(rpc_hello(caller, where["token"], nonce))
            answer = json.loads(await asyncio.wait_for(wire.read_framed(reader, _PROOF_MAX), timeout_s))
            if not hmac.compare_digest(str(answer.get("proof", "")), proof(where["token"], nonce)):
                raise LinkBroken("the host did not prove the token")
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
                AttributeError, wire.WireError) as exc:
            if writer is not None:
                writer.close()
            raise LinkBroken(f"no link to {where.get('host')}:{where.get('port')}: {exc!r}") from None
        return cls(reader, writer)

    @property
    def broken(self) -> bool:
        return self._broken is not None

    async def call(self, method: str, *args: Any, timeout_s: float) -> Any:
        if self._broken is not None:
            raise LinkBroken(repr(self._broken))
        loop = asyncio.get_running_loop()
        call_id, started = next(self._ids), loop.time()
        fut = self._waiting[call_id] = loop.create_future()
        try:
            self._writer.write(message((call_id, method, args)))
            await self._writer.drain()
            return await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:      # first: it is an OSError too
            # A host that answered nothing at all meanwhile is gone without closing the
            # socket (its node vanished): the next call looks it up again. One that answered
            # other calls is only slow on this one, and the link stays for them.
            if self._heard < started:
                self._break(LinkBroken(f"no answer in {timeout_s} s"))
            raise
        except (OSError, ConnectionError) as exc:
            self._break(exc)
            raise LinkBroken(repr(exc)) from None
        finally:
            self._waiting.pop(call_id, None)

    def close(self) -> None:
        self._break(LinkBroken("closed"))
        self._answers.cancel()

    async def _read_answers(self) -> None:
        try:
            while True:
                call_id, ok, value = await read_message(self._reader)
                self._heard = asyncio.get_running_loop().time()
                fut = self._waiting.get(call_id)
                if fut is None or fut.done():
                    continue              # its caller gave up (timed out) meanwhile
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(RuntimeError(f"host failed the call: {value}"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:          # EOF, a reset, or bytes that are not an answer
            self._break(exc)

    def _break(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
            self._writer.close()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(LinkBroken(repr(exc)))
        self._waiting.clear()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: Any, token: str,
                nonce: Any) -> None:
    """The host's side of one link, after its hello: prove the token, then run each call as a
    task of its own (as Ray runs an async actor's calls) and write each answer when it is ready."""
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
        raise wire.WireError("an rpc hello without a nonce")
    writer.write(proof_frame(token, nonce))
    running: set[asyncio.Task] = set()

    async def run(call_id: int, method: str, args: tuple) -> None:
        try:
            answer = (call_id, True, await getattr(target, method)(*args))
        except Exception as exc:      # the caller gets a message, never a traceback object
            answer = (call_id, False, repr(exc))
        try:
            writer.write(message(answer))
            await writer.drain()
        except (OSError, ConnectionError):
            pass                      # the caller is gone; its read ends and it retries elsewhere

    try:
        while True:
            try:
                call_id, method, args = await read_message(reader)
            except (asyncio.IncompleteReadError, EOFError, ConnectionError, OSError):
                return
            if method not in METHODS or not isinstance(args, tuple) or not isinstance(call_id, int):
                raise wire.WireError(f"not a call: {method!r}")
            task = asyncio.get_running_loop().create_task(run(call_id, method, args))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        writer.close()
