"""The fan-out stream's bytes: a host's frames for one gateway replica over a TCP connection.

Why not Ray: a streaming generator costs ~0.7 ms of CPU per item on the two sides, and every
event crosses (hosts × replicas) of them; the same batch over a plain socket costs ~0.05 ms
(``python -m bench.ray_hops``). Ray still carries the calls, and tells the replica where each
host listens and with which token (``ActorHost.fanout_endpoint``): a connection is only as
trusted as that call.

On the wire:
- the replica opens with a hello: 4-byte big-endian length, then JSON ``{"replica", "token"}``;
  the host answers nothing until the token matches, and closes the connection if it does not;
- then the host sends batches, forever: 4-byte length, then msgpack of a list of items
  ``[socket_ids, conversation_id, seq, frame, forget]`` (see actors/outbox.py). An empty batch
  first says "attached", later ones are heartbeats.

msgpack and JSON decode into plain data only, so nothing read from a socket can run code.
A hello with ``"rpc": true`` opens a call link instead (actors/host_rpc.py), which proves the
token both ways before it carries anything.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import struct
from typing import Any

import msgpack

_LEN = struct.Struct("!I")
MAX_HELLO = 1024
MAX_BATCH = 256 * 1024 * 1024     # far above any real batch: a guard against a stream gone mad
BATCH_ITEMS = 2000                # items per batch written, so one batch stays a few MB at most


class WireError(Exception):
    """The other side broke the protocol (a bad length, an unreadable body, a wrong token)."""


def framed(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


async def read_framed(reader: asyncio.StreamReader, limit: int) -> bytes:
    size, = _LEN.unpack(await reader.readexactly(_LEN.size))
    if size > limit:
        raise WireError(f"frame of {size} bytes, over {limit}")
    return await reader.readexactly(size)


def hello(replica_id: str, token: str) -> bytes:
    return framed(json.dumps({"replica": replica_id, "token": token}).encode())


async def read_hello(reader: asyncio.StreamReader, token: str) -> dict[str, Any]:
    """A hello that carries ``token`` (``replica`` names the caller; ``rpc`` asks for calls,
    actors/host_rpc.py, instead of the stream); WireError otherwise."""
    try:
        msg = json.loads(await read_framed(reader, MAX_HELLO))
        replica, given = msg["replica"], msg["token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"not a hello: {exc!r}") from None
    if not (isinstance(replica, str) and isinstance(given, str) and replica):
        raise WireError("not a hello")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise WireError("wrong token")
    return msg


def batch(items: list) -> bytes:
    # forget is a frozenset (or None): msgpack has no sets, it travels as a list.
    return framed(msgpack.packb([(s, c, q, f, list(g) if g else None) for s, c, q, f, g in items]))


async def read_batch(reader: asyncio.StreamReader) -> list[tuple[Any, ...]]:
    try:
        items = msgpack.unpackb(await read_framed(reader, MAX_BATCH))
        return [(s, c, q, f, frozenset(g) if g else None) for s, c, q, f, g in items]
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"not a batch: {exc!r}") from None
