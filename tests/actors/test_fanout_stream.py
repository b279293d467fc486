"""The fan-out stream: a host's frames reach a gateway replica over TCP, only with the token Ray gave.

A real ActorHost runs in-process over the session's SecantusDB and redis-server; the replica's
side is the wire module over a real socket to the host's listener."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid

import pytest

from actors import fanout_wire as wire
from actors.host import ActorHost
from raychat.config import Settings


@pytest.fixture
async def host(mongo_server, redis_server):
    s = Settings(mongodb_uri=mongo_server.uri, mongodb_db=f"test_{uuid.uuid4().hex}",
                 redis_url=redis_server.uri, push_enabled=False)
    h = ActorHost("h1", s.to_dict())
    h._ensure_started = lambda: None      # its background tasks follow Ray's directory: not here
    yield h
    if h._listener is not None:
        h._listener.close()
    await h.stores.close()
    await h.presence.close()


async def subscribe(host, replica: str, token: str | None = None):
    where = await host.fanout_endpoint()
    reader, writer = await asyncio.open_connection(where["host"], where["port"])
    writer.write(wire.hello(replica, token if token is not None else where["token"]))
    return reader, writer


async def next_batch(reader) -> list:
    return await asyncio.wait_for(wire.read_batch(reader), 5)


async def connect(host, uid: str, replica: str = "replica-1") -> None:
    await host.registry.call("user", uid, "connect", (replica, f"sock-{uid}"))


async def test_a_replica_gets_attached_then_every_frame_in_order(host):
    await connect(host, "alice")
    await connect(host, "bob")
    reader, writer = await subscribe(host, "replica-1")
    assert await next_batch(reader) == []          # attached
    frames = [("c1", seq, f'{{"seq":{seq}}}', frozenset({"bob"}) if seq == 3 else None) for seq in range(1, 6)]
    host._deliver_local([(["alice", "bob"], frames, None)])
    got = []
    while len(got) < 5:
        got += await next_batch(reader)
    assert [(sorted(s), c, q, f, g) for s, c, q, f, g in got] == \
        [(["sock-alice", "sock-bob"], "c1", seq, frame, forget) for (_, seq, frame, forget) in frames]
    assert got[2][4] == frozenset({"bob"}) and got[0][4] is None
    writer.close()


async def test_a_backlog_leaves_in_bounded_batches_and_in_order(host):
    await connect(host, "alice")
    n = wire.BATCH_ITEMS * 2 + 7
    host._deliver_local([(["alice"], [("c1", seq, "{}", None) for seq in range(1, n + 1)], None)])
    reader, writer = await subscribe(host, "replica-1")
    assert await next_batch(reader) == []
    sizes, seqs = [], []
    while len(seqs) < n:
        batch = await next_batch(reader)
        sizes.append(len(batch))
        seqs += [item[2] for item in batch]
    assert seqs == list(range(1, n + 1))
    assert max(sizes) == wire.BATCH_ITEMS
    writer.close()


@pytest.mark.parametrize("hello", [
    wire.hello("replica-1", "not-the-token"),
    struct.pack("!I", 10_000_000) + b"x",                       # a length far over a hello
    struct.pack("!I", 5) + b"{}{}{",                              # not JSON
    struct.pack("!I", 2) + b"[]",                                 # JSON, not a hello
    struct.pack("!I", 26) + json.dumps({"replica": 7, "token": "t"}).encode()[:26],
])
async def test_a_connection_without_the_token_gets_nothing_and_is_closed(host, hello):
    await connect(host, "alice")
    where = await host.fanout_endpoint()
    reader, writer = await asyncio.open_connection(where["host"], where["port"])
    writer.write(hello)
    host._deliver_local([(["alice"], [("c1", 1, "{}", None)], None)])
    assert await asyncio.wait_for(reader.read(), 5) == b""       # closed, not a byte written
    assert [item[2] for item in host.outboxes["replica-1"].items] == [1]     # kept for the replica
    writer.close()


async def test_a_silent_connection_is_closed_after_the_hello_timeout(host, monkeypatch):
    monkeypatch.setattr("actors.host._HELLO_S", 0.2)
    where = await host.fanout_endpoint()
    reader, writer = await asyncio.open_connection(where["host"], where["port"])
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_connections_past_the_cap_of_silent_ones_are_closed_unread_and_a_replica_still_gets_in(
        host, monkeypatch):
    monkeypatch.setattr("actors.host._MAX_AWAITING_HELLO", 3)
    where = await host.fanout_endpoint()
    silent = [await asyncio.open_connection(where["host"], where["port"]) for _ in range(3)]
    await asyncio.sleep(0.1)                         # all three are waiting for their hello
    reader, writer = await asyncio.open_connection(where["host"], where["port"])
    writer.write(wire.hello("replica-1", where["token"]))
    # Closed at once, long before the 5 s hello timeout, even with the right token (unread: the
    # close may reach the client as a reset).
    try:
        assert await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        pass
    assert (await host.stats())["connections_refused"] == 1
    writer.close()
    for _, w in silent:                              # they go: their slots are free again
        w.close()
    for _ in range(100):
        if host._awaiting_hello == 0:
            break
        await asyncio.sleep(0.02)
    await connect(host, "alice")
    reader, writer = await subscribe(host, "replica-1")
    assert await next_batch(reader) == []            # attached
    host._deliver_local([(["alice"], [("c1", 1, "{}", None)], None)])
    assert [item[2] for item in await next_batch(reader)] == [1]
    writer.close()


async def test_a_replica_that_goes_away_is_forgotten_at_once(host):
    await connect(host, "alice")
    await connect(host, "bob", replica="replica-2")
    reader, writer = await subscribe(host, "replica-1")
    assert await next_batch(reader) == []
    writer.close()
    for _ in range(100):      # well before the 15 s heartbeat would notice
        if "replica-1" not in host.outboxes and not host.registry.peek("user", "alice").connections:
            break
        await asyncio.sleep(0.02)
    assert "replica-1" not in host.outboxes
    assert host.registry.peek("user", "alice").connections == {}
    assert host.registry.peek("user", "bob").connections == {"replica-2": {"sock-bob"}}


async def test_a_second_subscription_of_the_same_replica_takes_over(host):
    await connect(host, "alice")
    old_reader, old_writer = await subscribe(host, "replica-1")
    assert await next_batch(old_reader) == []
    reader, writer = await subscribe(host, "replica-1")
    assert await next_batch(reader) == []
    host._deliver_local([(["alice"], [("c1", 1, "{}", None)], None)])
    assert [item[2] for item in await next_batch(reader)] == [1]
    assert await asyncio.wait_for(old_reader.read(), 5) == b""     # the old one ends, sending nothing
    # The takeover did not drop the replica's sessions.
    assert host.registry.peek("user", "alice").connections == {"replica-1": {"sock-alice"}}
    old_writer.close()
    writer.close()


async def test_a_batch_over_the_limit_is_refused_by_the_reader():
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack("!I", wire.MAX_BATCH + 1))
    with pytest.raises(wire.WireError):
        await wire.read_batch(reader)
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack("!I", 3) + b"\xc1\xc1\xc1")     # not msgpack
    with pytest.raises(wire.WireError):
        await wire.read_batch(reader)
