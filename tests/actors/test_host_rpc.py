"""Calls to a host over its call link (actors/host_rpc.py): only with the token Ray gave, each
side proving it, answers matched by id, and a broken link failing its calls at once.

A real ActorHost runs in-process over the session's SecantusDB and redis-server; the caller's
side is HostLink over a real socket to the host's listener."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from actors import fanout_wire as wire
from actors import host_rpc as rpc
from actors.host import ActorHost
from actors.membership import View
from raychat.config import Settings


def make_host(name: str, mongo_server, redis_server) -> ActorHost:
    s = Settings(mongodb_uri=mongo_server.uri, mongodb_db=f"test_{uuid.uuid4().hex}",
                 redis_url=redis_server.uri, push_enabled=False)
    h = ActorHost(name, s.to_dict())
    h._ensure_started = lambda: None      # its background tasks follow Ray's directory: not here
    h.membership.apply(View(1, ("h1", "h2")))
    return h


async def close_host(h: ActorHost) -> None:
    if h._listener is not None:
        h._listener.close()
    for link in h._links.values():
        link.close()
    await h.stores.close()
    await h.presence.close()


@pytest.fixture
async def host(mongo_server, redis_server):
    h = make_host("h1", mongo_server, redis_server)
    yield h
    await close_host(h)


@pytest.fixture
async def peer(mongo_server, redis_server):
    h = make_host("h2", mongo_server, redis_server)
    yield h
    await close_host(h)


def owned_by(host: ActorHost, prefix: str) -> str:
    """A user id the host owns under its view."""
    return next(f"{prefix}{i}" for i in range(1000) if host._owns_now(("user", f"{prefix}{i}")))


async def test_call_many_over_the_link_posts_to_the_mailbox_and_answers(host):
    link = await rpc.HostLink.open(await host.fanout_endpoint(), "gw-test")
    alice = owned_by(host, "alice")
    out = await link.call("call_many", "user", alice, [("connect", ("replica-1", "s1")),
                                                       ("connect", ("replica-1", "s2"))], timeout_s=5)
    assert [sorted(r) for r in out] == [["ok"], ["ok"]]
    assert host.registry.peek("user", alice).connections == {"replica-1": {"s1", "s2"}}
    # A key the host does not own under its view: "moved", nothing posted.
    bob = next(f"bob{i}" for i in range(1000) if not host._owns_now(("user", f"bob{i}")))
    assert await link.call("call_many", "user", bob, [("connect", ("replica-1", "s3"))], timeout_s=5) == \
        [{"moved": 1}]
    assert host.registry.peek("user", bob) is None
    link.close()


async def test_a_wrong_token_gets_no_proof_and_no_link(host):
    where = {**await host.fanout_endpoint(), "token": "not-the-token"}
    with pytest.raises(rpc.LinkBroken):
        await rpc.HostLink.open(where, "gw-test", timeout_s=2)


async def test_a_listener_that_cannot_prove_the_token_is_refused():
    async def impostor(reader, writer):
        await wire.read_hello(reader, "the-token")
        writer.write(wire.framed(json.dumps({"proof": rpc.proof("another-token", "x" * 22)}).encode()))
        await writer.drain()
        await asyncio.sleep(5)

    server = await asyncio.start_server(impostor, "127.0.0.1", 0)
    where = {"host": "127.0.0.1", "port": server.sockets[0].getsockname()[1], "token": "the-token"}
    try:
        with pytest.raises(rpc.LinkBroken, match="did not prove"):
            await rpc.HostLink.open(where, "gw-test", timeout_s=2)
    finally:
        server.close()


@pytest.mark.parametrize("request_", [
    (1, "stop", ()),                         # a method that is not a call of the link
    (1, "__init__", ()),
    ("one", "call_many", ()),                # not an id
    (1, "call_many", ["user", "x", []]),     # args not a tuple
])
async def test_a_request_that_is_not_a_call_ends_the_link(host, request_):
    link = await rpc.HostLink.open(await host.fanout_endpoint(), "gw-test")
    link._writer.write(rpc.message(request_))
    for _ in range(100):
        if link.broken:
            break
        await asyncio.sleep(0.02)
    assert link.broken
    with pytest.raises(rpc.LinkBroken):
        await link.call("call_many", "user", "x", [], timeout_s=1)


class Slow:
    """A stand-in target: deliver(batch) answers after batch seconds, with batch."""

    async def deliver(self, batch):
        await asyncio.sleep(batch)
        return batch

    async def call_many(self, *args):
        raise RuntimeError("boom")


async def serve_target(target, token="t" * 20):
    async def handle(reader, writer):
        hello = await wire.read_hello(reader, token)
        await rpc.serve(reader, writer, target, token, hello["nonce"])

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, {"host": "127.0.0.1", "port": server.sockets[0].getsockname()[1], "token": token}


@pytest.fixture
async def slow_link():
    server, where = await serve_target(Slow())
    link = await rpc.HostLink.open(where, "gw-test")
    yield link
    link.close()
    server.close()


async def test_answers_come_as_each_call_ends_and_reach_their_own_caller(slow_link):
    done = []

    async def one(delay):
        done.append(await slow_link.call("deliver", delay, timeout_s=5))

    await asyncio.gather(one(0.3), one(0.0), one(0.1))
    assert done == [0.0, 0.1, 0.3]
    with pytest.raises(RuntimeError, match="boom"):     # the host's failure, as a message
        await slow_link.call("call_many", timeout_s=5)
    assert not slow_link.broken


async def test_calls_in_flight_fail_at_once_when_the_host_goes_away(slow_link):
    pending = asyncio.ensure_future(slow_link.call("deliver", 30, timeout_s=60))
    await asyncio.sleep(0.1)
    slow_link._writer.transport.abort()          # as a host process that dies: the socket closes
    with pytest.raises(rpc.LinkBroken):
        await asyncio.wait_for(pending, 5)
    assert slow_link.broken


async def test_a_host_silent_past_the_timeout_breaks_the_link_but_a_slow_call_does_not(slow_link):
    slow = asyncio.ensure_future(slow_link.call("deliver", 0.6, timeout_s=0.3))
    await slow_link.call("deliver", 0.05, timeout_s=1)       # answered meanwhile: the host is alive
    with pytest.raises(asyncio.TimeoutError):
        await slow
    assert not slow_link.broken
    await asyncio.sleep(0.4)                                  # the slow call's late answer comes and goes
    with pytest.raises(asyncio.TimeoutError):
        await slow_link.call("deliver", 5, timeout_s=0.3)    # nothing answered at all
    assert slow_link.broken


async def test_a_delivery_reaches_the_peers_outbox_over_its_link(host, peer):
    class Handle:      # what ray.get_actor gives: the peer's endpoint is real
        class fanout_endpoint:
            @staticmethod
            def remote():
                return peer.fanout_endpoint()

    erin = owned_by(peer, "erin")
    await peer.registry.call("user", erin, "connect", ("replica-1", "sock-erin"))
    host._resolve = lambda name: host._peers.setdefault(name, Handle())
    await host._deliver_to_peer("h2", [([erin], [("c1", 4, "{}", None)], None)])
    assert [item[2] for item in peer.outboxes["replica-1"].items] == [4]
    # The link breaks (the peer restarted): the next delivery opens a new one and arrives.
    first = host._links["h2"]
    first._writer.transport.abort()
    await asyncio.sleep(0.05)
    await host._deliver_to_peer("h2", [([erin], [("c1", 5, "{}", None)], None)])
    assert host._links["h2"] is not first
    assert [item[2] for item in peer.outboxes["replica-1"].items] == [4, 5]
