"""The push worker in-process, on the real Redis, the real store and the fake providers' HTTP
servers; its clock is moved by hand (retry due times, breaker cool-downs), while the visibility
timeout and collapse window are Redis's own, kept short."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import pytest

from push.jobs import message_job
from push.providers.webhook import WebhookProvider
from push.targets import WebhookPolicy
from push.worker import PushWorker, WorkerConfig
from raychat.clock import FakeClock
from storage.embedded import free_port
from storage.mongo import MongoStores
from tests.fixtures_push import WEBHOOK_SECRET

from .conftest import VISIBILITY_S

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
CONFIG = WorkerConfig(batch_size=64, max_attempts=3, backoff_base_s=1.0, backoff_cap_s=4.0, breaker_threshold=2,
                      breaker_cooldown_s=30.0, collapse_window_s=60.0, send_timeout_s=0.5, claim_every_s=0,
                      block_ms=20)


class World:
    """Users, devices and a worker factory for one test."""

    def __init__(self, queue, stores, presence, server):
        self.queue, self.stores, self.presence, self.server = queue, stores, presence, server
        self.clock = FakeClock()
        self.cid = f"c_{uuid.uuid4().hex[:8]}"
        self.workers: list[PushWorker] = []

    async def device(self, user: str, name: str, platform: str = "webhook") -> str:
        token = f"{self.server.http_url}/hooks/{name}" if platform == "webhook" else "fJ3kAPA91b" * 16 + name
        device_id = f"d_{name}"
        await self.stores.devices.register({"device_id": device_id, "user_id": user, "platform": platform,
                                            "token": token, "created_at": T0}, 100)
        return device_id

    def worker(self, name: str = "w1", provider=None, presence=None, devices=None, **config) -> PushWorker:
        provider = provider or WebhookProvider(WEBHOOK_SECRET, WebhookPolicy("http://127.0.0.1"), self.clock, 0.5)
        w = PushWorker(self.queue, devices or self.stores.devices, presence or self.presence, self.stores.users,
                       {"webhook": provider}, WorkerConfig(**{**CONFIG.__dict__, **config}), self.clock, name,
                       rand=lambda: 0.5)
        self.workers.append(w)
        return w

    async def send(self, *bodies: str, sender: str = "alice", members=("alice", "bob", "carol"), e2ee=False,
                   title: str | None = "Team", first_seq: int = 1) -> None:
        events = [{"conversation_id": self.cid, "seq": first_seq + i, "kind": "message", "sender_id": sender,
                   "body": b} for i, b in enumerate(bodies)]
        await self.queue.enqueue([message_job(self.cid, events, members, e2ee=e2ee, title=title)])

    def pushes(self) -> list[tuple[str, dict]]:
        """(hook name, body) of each webhook the receiver accepted or refused, in arrival order."""
        return [(r.path.rsplit("/", 1)[1], json.loads(r.body)) for r in self.server.sends("/hooks/")]

    async def close(self) -> None:
        for w in self.workers:
            for p in w.providers.values():
                await p.close()


async def drain(worker: PushWorker) -> int:
    """Step until a step finds nothing (due retries included); how many jobs were handled."""
    total = 0
    while n := await worker.step():
        total += n
    return total


@pytest.fixture
async def world(queue, mongo_stores, presence, providers_server):
    w = World(queue, mongo_stores, presence, providers_server)
    yield w
    await w.close()


# ---- who gets what ------------------------------------------------------------------------------

async def test_offline_members_get_a_push_and_online_ones_and_the_sender_do_not(world):
    await world.device("bob", "bob")
    await world.device("carol", "carol")
    await world.device("alice", "alice")
    await world.presence.set_online("carol", 60)
    await world.send("lunch?")
    await drain(world.worker())
    assert [name for name, _ in world.pushes()] == ["bob"]
    assert await world.queue.depth() == {"stream": 0, "retries": 0, "dead": 0}


async def test_a_push_names_the_sender_and_previews_the_message(world):
    await world.stores.users.create({"user_id": "alice", "username": f"alice{uuid.uuid4().hex[:6]}",
                                     "password_hash": None, "display_name": "Alice", "created_at": T0})
    await world.device("bob", "bob")
    await world.send("lunch at noon?")
    await drain(world.worker())
    [(_, body)] = world.pushes()
    assert body == {"type": "message", "device_id": "d_bob", "conversation_id": world.cid, "seq": 1,
                    "title": "Alice in Team", "body": "lunch at noon?", "sender_id": "alice"}


async def test_an_e2ee_push_carries_no_body_and_no_sender(world):
    await world.device("bob", "bob")
    await world.send("Y2lwaGVydGV4dA==", e2ee=True)
    await drain(world.worker())
    [(_, body)] = world.pushes()
    assert body["title"] == "New message" and body["body"] is None and body["sender_id"] is None


async def test_a_burst_collapses_to_one_push_per_device_and_conversation(world):
    await world.device("bob", "bob")
    await world.device("bob", "bob2")
    await world.send("one", "two")                    # one batch
    await world.send("three", first_seq=3)            # another batch, within the window
    worker = world.worker()
    await drain(worker)
    assert sorted(name for name, _ in world.pushes()) == ["bob", "bob2"]
    assert {body["seq"] for _, body in world.pushes()} == {1}
    assert worker.stats["collapsed"] == 2
    world.cid = "c_other"                             # another conversation is not collapsed
    await world.send("hello", first_seq=1)
    await drain(worker)
    assert len(world.pushes()) == 4


async def test_a_provider_that_is_off_gets_nothing_and_is_counted(world):
    await world.device("bob", "phone", platform="fcm")
    await world.device("bob", "bob")
    worker = world.worker()
    await world.send("hi")
    await drain(worker)
    assert [name for name, _ in world.pushes()] == ["bob"]
    assert worker.stats["dropped_fcm_off"] == 1


# ---- what the provider says -------------------------------------------------------------------

async def test_an_invalid_token_removes_the_device(world):
    await world.device("bob", "unregistered")
    await world.device("bob", "bob")
    await world.send("hi")
    await drain(world.worker())
    assert [d["device_id"] for d in await world.stores.devices.list_for_user("bob")] == ["d_bob"]
    assert await world.queue.depth() == {"stream": 0, "retries": 0, "dead": 0}


async def test_a_rejected_push_is_dead_lettered_at_once(world):
    await world.device("bob", "badpayload")
    await world.send("hi")
    await drain(world.worker())
    [dead] = await world.queue.dead_letters()
    assert dead["job"]["device_id"] == "d_badpayload" and dead["reason"].startswith("rejected")
    assert len(world.pushes()) == 1


async def test_a_failing_push_is_retried_with_backoff_then_dead_lettered_after_max_attempts(world):
    await world.device("bob", "bob")
    world.server.mode = "fail"
    worker = world.worker(breaker_threshold=100)      # the breaker is another test's business
    await world.send("hi")
    await drain(worker)
    assert len(world.pushes()) == 1
    assert await world.queue.depth() == {"stream": 0, "retries": 1, "dead": 0}
    await drain(worker)
    assert len(world.pushes()) == 1, "retried before its backoff was over"
    for _ in range(3):
        world.clock.advance(CONFIG.backoff_cap_s)
        await drain(worker)
    assert len(world.pushes()) == 3
    [dead] = await world.queue.dead_letters()
    assert dead["reason"].startswith("3 attempts") and dead["job"]["attempt"] == 2


async def test_a_push_that_failed_once_is_delivered_on_retry(world):
    await world.device("bob", "bob")
    world.server.mode = "fail"
    worker = world.worker()
    await world.send("hi")
    await drain(worker)
    world.server.mode = "ok"
    world.clock.advance(CONFIG.backoff_cap_s)
    await drain(worker)
    assert worker.stats["delivered"] == 1 and worker.stats["retried"] == 1
    assert await world.queue.depth() == {"stream": 0, "retries": 0, "dead": 0}


async def test_a_provider_down_for_a_while_opens_the_breaker_and_every_job_is_delivered_after_it_closes(world):
    devices = [await world.device("bob", f"bob{i}") for i in range(6)]
    world.server.mode = "fail"
    worker = world.worker(batch_size=2)
    await world.send("hi")
    await drain(worker)
    assert worker.breaker_states() == {f"webhook:127.0.0.1:{world.server.http_url.rsplit(':', 1)[1]}": "open"}
    assert len(world.pushes()) == 2, "the breaker opened after 2 failures: the other jobs wait"
    # A long outage: ten cool-downs (each with one failed trial), far more than max_attempts.
    for _ in range(10):
        world.clock.advance(CONFIG.breaker_cooldown_s + CONFIG.backoff_cap_s)
        await drain(worker)
    assert len(world.pushes()) == 2 + 10, "one trial per cool-down, no more"
    assert (await world.queue.depth())["dead"] == 0, "an outage never dead-letters a push"
    world.server.mode = "ok"
    # The trial closes the breaker; jobs deferred while it was out come back a moment later.
    for _ in range(2):
        world.clock.advance(CONFIG.breaker_cooldown_s + CONFIG.backoff_cap_s)
        await drain(worker)
    assert list(worker.breaker_states().values()) == ["closed"]
    delivered = [body["device_id"] for _, body in world.pushes()[12:]]
    assert sorted(delivered) == sorted(devices), "each job delivered once the provider is back"
    assert await world.queue.depth() == {"stream": 0, "retries": 0, "dead": 0}


async def test_a_store_outage_during_expansion_retries_the_message_job(world, mongo_stores):
    down = MongoStores(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", "x", timeout_ms=300)
    worker = world.worker(devices=down.devices)
    await world.send("hi")
    await drain(worker)
    assert await world.queue.depth() == {"stream": 0, "retries": 1, "dead": 0}
    await down.close()


async def test_a_job_that_is_not_a_push_job_is_dead_lettered(world):
    await world.queue.enqueue([{"type": "mystery"}])
    await drain(world.worker())
    [dead] = await world.queue.dead_letters()
    assert "unknown job type" in dead["reason"]


# ---- at least once ----------------------------------------------------------------------------

class Hung:
    """A provider (or presence store) whose calls never return: its worker is killed mid-call."""

    platform = "webhook"

    def __init__(self):
        self.calls = 0

    def breaker_key(self, target):
        return "hung"

    async def _hang(self, *args):
        self.calls += 1
        await asyncio.Event().wait()

    send = get = _hang

    async def close(self):
        pass


async def kill_when(task: asyncio.Task, hung: Hung, calls: int) -> None:
    for _ in range(500):
        if hung.calls >= calls:
            break
        await asyncio.sleep(0.01)
    assert hung.calls >= calls, "the doomed worker never got to the provider"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_worker_killed_mid_batch_loses_no_delivery(world):
    devices = [await world.device(u, f"{u}{i}") for u in ("bob", "carol") for i in range(3)]
    await world.send("hi")
    hung = Hung()
    doomed = world.worker("doomed", provider=hung)
    assert await doomed.step() == 1                      # the message job, expanded into 6 deliveries
    task = asyncio.create_task(doomed.step())            # reads the 6, and is killed while sending
    await kill_when(task, hung, 6)
    assert world.pushes() == []
    await asyncio.sleep(VISIBILITY_S + 0.1)
    survivor = world.worker("survivor")
    await drain(survivor)
    assert survivor.stats["claimed"] == 6
    assert sorted(body["device_id"] for _, body in world.pushes()) == sorted(devices)
    assert await world.queue.depth() == {"stream": 0, "retries": 0, "dead": 0}


async def test_a_worker_killed_while_expanding_loses_no_message(world):
    await world.device("bob", "bob")
    await world.send("hi")
    hung = Hung()
    task = asyncio.create_task(world.worker("doomed", presence=hung).step())
    await kill_when(task, hung, 1)
    await asyncio.sleep(VISIBILITY_S + 0.1)
    await drain(world.worker("survivor"))
    assert [name for name, _ in world.pushes()] == ["bob"]
    assert await world.queue.depth() == {"stream": 0, "retries": 0, "dead": 0}
