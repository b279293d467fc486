"""Push jobs leave from the host that owns each recipient, only for recipients it sees offline.

An ActorHost is a plain class (Ray wraps it in actors/directory.py); here it runs in-process over
the session's real SecantusDB and redis-server, with a recording queue in place of the push queue."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from actors.host import ActorHost
from push.jobs import message_job
from push.tally import OutcomeTally
from raychat.config import Settings


class RecordingQueue:
    def __init__(self):
        self.jobs: list[dict] = []

    async def enqueue(self, jobs):
        self.jobs.extend(jobs)


@pytest.fixture
async def host(mongo_server, redis_server):
    s = Settings(mongodb_uri=mongo_server.uri, mongodb_db=f"test_{uuid.uuid4().hex}",
                 redis_url=redis_server.uri, push_enabled=False)
    h = ActorHost("h1", s.to_dict())
    h.env.push = RecordingQueue()
    yield h
    await h.stores.close()
    await h.presence.close()


def job():
    return message_job("c1", [{"kind": "message", "seq": 4, "sender_id": "alice", "body": "hi"}], (),
                       e2ee=False, title="Team")


async def settled(host) -> list[dict]:
    await asyncio.sleep(0)                 # the enqueue runs in a task of its own
    await asyncio.gather(*host.env._tasks)
    return host.env.push.jobs


async def connect(host, uid: str) -> None:
    await host.registry.call("user", uid, "connect", ("replica-1", f"sock-{uid}"))


async def test_a_job_names_only_the_members_without_a_live_socket(host):
    await connect(host, "alice")
    await connect(host, "bob")
    frame = [("c1", 4, '{"type":"event"}', None)]
    host._deliver_local([(["alice", "bob", "carol", "dave"], frame, job())])
    [sent] = await settled(host)
    assert sent["members"] == ["carol", "dave"]
    assert sent["messages"] == job()["messages"] and sent["id"] == "c1:4"
    # The live sockets got the frame all the same.
    assert [item[0] for item in host.outboxes["replica-1"].items] == [("sock-alice", "sock-bob")]
    assert host.push_skipped == 1          # bob; alice sent it and was never a recipient


async def test_no_job_when_every_member_is_online(host):
    for uid in ("alice", "bob"):
        await connect(host, uid)
    host._deliver_local([(["alice", "bob"], [("c1", 4, "{}", None)], job())])
    assert await settled(host) == []
    assert host.push_skipped == 1


async def test_a_member_in_the_grace_period_counts_as_online(host):
    # Presence stays online for 2 s after the last socket closes; so does the push decision.
    await connect(host, "bob")
    await host.registry.call("user", "bob", "disconnect", ("replica-1", "sock-bob"))
    host._deliver_local([(["bob"], [("c1", 4, "{}", None)], job())])
    assert await settled(host) == []


async def test_frames_without_a_job_enqueue_nothing(host):
    host._deliver_local([(["carol"], [("c1", 0, "{}", None)], None)])
    assert await settled(host) == []


async def test_the_skipped_count_joins_the_workers_outcomes_in_the_tally(host, redis_server):
    host.push_tally = OutcomeTally(redis_server.uri, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        await connect(host, "bob")
        host._deliver_local([(["alice", "bob", "carol"], [("c1", 4, "{}", None)], job())])
        await host.flush_push_tally()
        assert await host.push_tally.read() == {"skipped_online": 1} and host.push_skipped == 0
        await host.flush_push_tally()      # nothing new: nothing added
        assert await host.push_tally.read() == {"skipped_online": 1}
    finally:
        await host.push_tally.close()


class DeadPeer:
    """What ray.get_actor gives for a peer host that is restarting: asking where it listens fails."""

    class fanout_endpoint:
        @staticmethod
        def remote():
            async def fail():
                raise ConnectionError("peer restarting")
            return fail()


class LivePeer:
    """A peer host's handle whose endpoint is a real ActorHost's listener."""

    def __init__(self, peer: ActorHost):
        class fanout_endpoint:
            @staticmethod
            def remote():
                return peer.fanout_endpoint()
        self.fanout_endpoint = fanout_endpoint


async def test_a_peer_started_again_under_its_name_gets_the_batch_through_a_fresh_lookup(host, mongo_server,
                                                                                          redis_server):
    # The cached handle names the peer that died; the batch goes once more, to the new one.
    s = Settings(mongodb_uri=mongo_server.uri, mongodb_db=f"test_{uuid.uuid4().hex}",
                 redis_url=redis_server.uri, push_enabled=False)
    peer = ActorHost("h2", s.to_dict())
    peer._ensure_started = lambda: None
    try:
        await peer.registry.call("user", "erin", "connect", ("replica-1", "sock-erin"))
        fresh = LivePeer(peer)
        host._peers["h2"] = DeadPeer()
        host._resolve = lambda name: host._peers.setdefault(name, fresh)
        batch = [(["erin"], [("c1", 4, "{}", None)], job())]
        await host._deliver_to_peer("h2", batch)
        assert [item[2] for item in peer.outboxes["replica-1"].items] == [4] and host._peers["h2"] is fresh
        assert await settled(host) == []               # delivered: no push fallback
    finally:
        for link in host._links.values():
            link.close()
        peer._listener.close()
        await peer.stores.close()
        await peer.presence.close()


async def test_a_failed_delivery_to_a_peer_still_enqueues_the_job_for_all_its_users(host):
    # Whether the peer's users are online is unknown: the worker asks presence.
    host._peers["h2"] = DeadPeer()
    host._resolve = lambda name: DeadPeer()        # still restarting when looked up again
    wake = asyncio.Event()
    host._peer_queues["h2"] = [(["erin", "frank"], [("c1", 4, "{}", None)], job()),
                               (["gus"], [("c1", 0, "{}", None)], None)]
    wake.set()
    sender = asyncio.get_running_loop().create_task(host._peer_sender("h2", wake))
    try:
        for _ in range(100):
            if host.env.push.jobs:
                break
            await asyncio.sleep(0.01)
        [sent] = await settled(host)
        assert sent["members"] == ["erin", "frank"] and sent["id"] == "c1:4"
        assert "h2" not in host._peers          # resolved afresh next time
    finally:
        sender.cancel()
