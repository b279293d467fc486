"""ActorHost: one Ray actor process that runs many virtual actors.

Calls from gateways arrive as ``call_many(kind, id, items)`` over a call link of their own
(actors/host_rpc.py) and answer with plain values (``{"ok": …}`` or ``{"err": {code,
message}}``) so no traceback crosses a process. Fan-out leaves through one ordered sender per
peer host (``deliver`` over that peer's call link) and reaches each gateway replica through one
TCP connection per replica (the fan-out stream, actors/fanout_wire.py). ``fanout_endpoint``, a
Ray call, says where this host listens for both: per event, O(hosts) calls and O(hosts +
replicas) writes, never O(members), and no Ray call at all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
from typing import Any

import ray

from push.jobs import for_recipients, skipped_online
from push.tally import OutcomeTally
from push.runtime import build_queue
from raychat import logs
from raychat.clock import SystemClock
from raychat.config import Settings
from raychat.errors import ChatError, Internal
from raychat.gc_tuning import freeze_startup_objects
from storage.mongo import MongoStores
from storage.redis_store import RedisPresence

from .conversation import ConversationActor
from .env import ActorEnv
from . import fanout_wire as wire
from . import host_rpc as rpc
from . import metrics as host_metrics
from .follower import MembershipFollower
from .membership import View
from .outbox import Outbox
from .placement import group_by_owner, owner
from .registry import PassivationReason, Registry
from .session import SessionActor

log = logging.getLogger("raychat.host")

_PUSH_TALLY_S = 2.0         # how often a host adds its skipped_online count to the push tally
_HEARTBEAT_S = 15.0          # an empty batch on an idle stream, so a replica notices a dead host
_OUTBOX_CAPACITY = 100_000
_PEER_CALL_S = 10.0         # a peer that answers no delivery this long is looked up again
_HELLO_S = 5.0               # a fan-out connection that sends no hello this long is closed
# Connections waiting for their hello at once. A real burst is one per gateway replica and peer
# host; past this, new ones are closed unread, so connections that never say hello cannot pile
# up file descriptors (each is held _HELLO_S) in a host that also holds every session's state.
_MAX_AWAITING_HELLO = 256


def _log_context(kind: str, ident: str) -> None:
    """Log lines of this call, and of the mailbox task it may start, name the actor: each Ray
    call runs in a task of its own, and a mailbox's task is started by a call to that actor."""
    logs.new_context(**{_LOG_FIELD.get(kind, "actor_id"): ident})


_LOG_FIELD = {"conv": "conversation_id", "user": "user_id"}


class ActorHost:
    def __init__(self, name: str, settings: dict[str, Any], *, freeze_gc: bool = False):
        self.name = name
        self.settings = Settings.from_dict(settings)
        s = self.settings
        logs.configure(s.log_level, s.log_format)
        self.stores = MongoStores(s.mongodb_uri, s.mongodb_db, write_concern=s.write_concern,
                                  journal=s.write_journal, timeout_ms=s.store_timeout_ms)
        self.presence = RedisPresence(s.redis_url, timeout_s=s.store_timeout_ms / 1000)
        self.clock = SystemClock()
        self.env = ActorEnv(events=self.stores.events, conversations=self.stores.conversations,
                            presence=self.presence, clock=self.clock, dedupe_window=s.dedupe_window,
                            presence_ttl_s=s.presence_ttl_s, max_group_members=s.max_group_members,
                            fanout=self._fanout, call_later=self._call_later,
                            push=build_queue(s) if s.push_enabled else None, media=self.stores.media)
        self.registry = Registry({"conv": lambda cid: ConversationActor(cid, self.env),
                                  "user": lambda uid: SessionActor(uid, self.env)},
                                 self.clock, idle_after_s=s.passivate_after_s,
                                 mailbox_capacity=s.mailbox_capacity)
        # The hosts that own keys now (from the directory): fan-out grouping and ownership.
        self.membership = MembershipFollower(name, s.namespace, self.registry)
        self.outboxes: dict[str, Outbox] = {}
        # The fan-out listener (fanout_endpoint): on this node's address, opened by the token.
        self._listener: asyncio.base_events.Server | None = None
        self._address = ray.util.get_node_ip_address()
        self._token = secrets.token_urlsafe(32)
        self._peers: dict[str, Any] = {}
        self._peer_queues: dict[str, list] = {}
        self._peer_wakeups: dict[str, asyncio.Event] = {}
        self._background: list[asyncio.Task] = []
        self._links: dict[str, rpc.HostLink] = {}
        self._awaiting_hello = 0
        self.connections_refused = 0   # fan-out/call connections closed without a valid hello
        self.peer_calls_out = 0        # deliveries to other hosts: O(hosts) per event, never O(members)
        # Recipients left out of push jobs because they were online: counted with the push
        # workers' outcomes (skipped_online), added to the shared tally every few seconds.
        self.push_tally = OutcomeTally(s.redis_url, timeout_s=s.store_timeout_ms / 1000) if s.push_enabled else None
        self.push_skipped = 0
        if freeze_gc:       # a host process of its own (actors/directory.py), not a test's
            freeze_startup_objects()

    # ---- lifecycle -------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._background:
            return
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._sweeper()), loop.create_task(self._presence_heartbeat()),
                            loop.create_task(self._push_tally_flusher()),
                            loop.create_task(self.membership.follow())]

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.membership.hosts

    async def ready(self) -> dict[str, Any]:
        """Answer once the host is up; creates the store indexes (idempotent)."""
        self._ensure_started()
        await self.stores.ensure_indexes()
        return {"name": self.name, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    async def stop(self) -> None:
        await self.registry.passivate_all(PassivationReason.HOST_STOPPING)

    async def leave(self, view: dict[str, Any]) -> None:
        """Hand every key over before the directory stops this host: take the view that no
        longer names it, then passivate what it holds (sessions stay online: they moved)."""
        self._ensure_started()
        self.membership.apply(View.from_dict(view))
        await self.membership.move_out()
        await self.registry.passivate_all(PassivationReason.MOVED)

    async def _sweeper(self) -> None:
        period = max(0.05, min(self.settings.passivate_after_s / 2, 5.0))
        while True:
            await asyncio.sleep(period)
            try:
                await self.registry.sweep()
            except Exception:
                log.exception("passivation sweep failed")

    async def _presence_heartbeat(self) -> None:
        ttl = self.settings.presence_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            uids = [a.uid for a in self.registry.actors("user") if a.online]
            if uids:
                try:
                    missing = await self.presence.refresh(uids, ttl)
                    # Marks gone while their session is still online were lost with Redis (a
                    # restart without persistence): put them back. Checked again after the
                    # round trip, so a session that went offline meanwhile stays offline.
                    for uid in missing:
                        actor = self.registry.peek("user", uid)
                        if actor is not None and actor.online:
                            await self.presence.set_online(uid, ttl)
                except Exception as exc:
                    log.warning("presence heartbeat failed: %r", exc)

    async def _push_tally_flusher(self) -> None:
        while True:
            await asyncio.sleep(_PUSH_TALLY_S)
            await self.flush_push_tally()

    async def flush_push_tally(self) -> None:
        n = self.push_skipped
        if not n or self.push_tally is None:
            return
        try:
            await self.push_tally.add({"skipped_online": n})
            self.push_skipped -= n
        except Exception as exc:     # kept for the next flush
            log.warning("push tally not added: %r", exc)

    # ---- calls from gateways ---------------------------------------------------------
    async def call(self, kind: str, ident: str, method: str, arg: Any = None) -> dict[str, Any]:
        self._ensure_started()
        _log_context(kind, ident)
        if not await self.membership.owns((kind, ident)):
            return self._moved()
        try:
            return {"ok": await self.registry.call(kind, ident, method, arg)}
        except ChatError as exc:
            return {"err": exc.to_dict()}
        except Exception:
            log.exception("call %s %s.%s failed", kind, ident, method)
            return {"err": Internal("internal error").to_dict()}

    async def call_many(self, kind: str, ident: str, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Several messages for one virtual actor, posted to its mailbox in this order before
        any is awaited (a gateway's ordered channel; see gateway/router.py).

        A key this host does not own under its view gets ``{"moved": view_version}`` for every
        item, and nothing is posted: the caller retries on the owner of its (newer) view."""
        self._ensure_started()
        _log_context(kind, ident)
        if not await self.membership.owns((kind, ident)):
            return [self._moved()] * len(items)
        futures = []
        for method, arg in items:
            try:
                futures.append(self.registry.post(kind, ident, method, arg))
            except ChatError as exc:     # a full mailbox refuses at once
                futures.append(exc)
        out = []
        for fut in futures:
            try:
                out.append({"ok": await fut} if not isinstance(fut, ChatError) else {"err": fut.to_dict()})
            except ChatError as exc:
                out.append({"err": exc.to_dict()})
            except Exception:
                log.exception("call %s %s failed", kind, ident)
                out.append({"err": Internal("internal error").to_dict()})
        return out

    async def stats(self) -> dict[str, Any]:
        return {"name": self.name, "pid": os.getpid(),
                "conversations": self.registry.count("conv"), "sessions": self.registry.count("user"),
                "activations": self.registry.activations, "passivations": self.registry.passivations,
                "mailbox_depth": self.registry.mailbox_depth(), "peer_calls_out": self.peer_calls_out,
                "connections_refused": self.connections_refused,
                "gc_frozen": gc.get_freeze_count(),     # start-up's objects no collection walks
                "outboxes": {r: len(o.items) for r, o in self.outboxes.items()},
                "view_version": self.membership.view.version, "moved_out": self.membership.moved_out}

    async def metrics(self) -> str:
        """This host's metrics in the Prometheus text format (a gateway's GET /metrics merges them)."""
        return host_metrics.exposition(self.registry)

    async def sweep_now(self) -> int:
        """Passivate idle actors at once (operators and benchmarks)."""
        return len(await self.registry.sweep())

    def _moved(self) -> dict[str, Any]:
        return {"moved": self.membership.view.version}

    def _call_later(self, delay_s: float, kind: str, ident: str, method: str, arg: Any) -> None:
        def post() -> None:
            if not self._owns_now((kind, ident)):
                return     # the key moved away meanwhile: activating it here would make a second copy
            task = asyncio.get_running_loop().create_task(self.registry.call(kind, ident, method, arg))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())   # failures are not news
        asyncio.get_running_loop().call_later(delay_s, post)

    # ---- fan-out ---------------------------------------------------------------------
    def _owns_now(self, key: tuple[str, str]) -> bool:
        hosts = self.membership.hosts
        return bool(hosts) and owner(key, hosts) == self.name

    def _fanout(self, users, frames: list[tuple[str, int, str, frozenset | None]],
                push_job: dict | None = None) -> None:
        if not frames or not self.hosts:
            return
        if not isinstance(users, (set, frozenset, list, tuple)):
            users = list(users)          # counted below, then grouped: a generator would be spent
        for _, seq, _, _ in frames:
            if seq:                      # an event; seq 0 is typing or a receipt
                host_metrics.FANOUT_RECIPIENTS.observe(len(users))
        for host, uids in group_by_owner("user", users, self.hosts).items():
            if host == self.name:
                self._deliver_local([(uids, frames, push_job)])
            else:
                self._peer_queues.setdefault(host, []).append((uids, frames, push_job))
                wake = self._peer_wakeups.get(host)
                if wake is None:
                    wake = self._peer_wakeups[host] = asyncio.Event()
                    asyncio.get_running_loop().create_task(self._peer_sender(host, wake))
                wake.set()

    async def _peer_sender(self, host: str, wake: asyncio.Event) -> None:
        """One ordered stream of deliveries to one peer: all queued work goes in one call."""
        while True:
            await wake.wait()
            wake.clear()
            batch, self._peer_queues[host] = self._peer_queues.get(host, []), []
            if not batch:
                continue
            try:
                await self._deliver_to_peer(host, batch)
            except Exception as exc:  # the peer is restarting; its sockets resync from the store
                log.warning("delivery to %s failed: %r", host, exc)
                # Whether its users are online is unknown here: the push worker asks presence.
                self._enqueue_push([for_recipients(job, uids) for uids, _, job in batch if job])

    async def _deliver_to_peer(self, host: str, batch: list) -> None:
        """One delivery over the peer's call link (actors/host_rpc.py), and once more after a
        fresh lookup if the cached link or handle failed: a peer that died for good and was
        started again under its name is reached only through a new lookup, and without the
        second try the first batch after its restart would be lost to live sockets (they would
        see it only at their next gap fill). A batch that arrives twice changes nothing:
        sockets drop a seq they already have."""
        for attempt in (1, 2):
            try:
                link = await self._peer_link(host)
                self.peer_calls_out += 1
                await link.call("deliver", batch, timeout_s=_PEER_CALL_S)
                return
            except Exception as exc:
                self._forget_peer(host)
                if attempt == 2:
                    raise
                log.info("delivery to %s failed, looking it up again: %r", host, exc)

    async def _peer_link(self, host: str) -> rpc.HostLink:
        link = self._links.get(host)
        if link is None or link.broken:
            handle = self._peers.get(host) or self._resolve(host)
            link = self._links[host] = await rpc.HostLink.open(await handle.fanout_endpoint.remote(), self.name)
        return link

    def _forget_peer(self, host: str) -> None:
        self._peers.pop(host, None)
        link = self._links.pop(host, None)
        if link is not None:
            link.close()

    def _resolve(self, host: str):
        handle = ray.get_actor(host, namespace=self.settings.namespace)
        self._peers[host] = handle
        return handle

    async def deliver(self, batch: list[tuple[list[str], list[tuple[str, int, str, Any]]]]) -> None:
        self._deliver_local(batch)

    def _deliver_local(self, batch) -> None:
        jobs = []
        for uids, frames, push_job in batch:
            by_replica: dict[str, list[str]] = {}
            away = []
            for uid in uids:
                session = self.registry.peek("user", uid)
                if session is None or not session.online:
                    away.append(uid)
                if session is None:
                    continue
                for replica, sockets in session.connections.items():
                    by_replica.setdefault(replica, []).extend(sockets)
            for replica, sockets in by_replica.items():
                box = self._outbox(replica)
                sids = tuple(sockets)
                for cid, seq, frame, forget in frames:
                    box.push((sids, cid, seq, frame, forget))
            if push_job:
                if away:
                    jobs.append(for_recipients(push_job, away))
                self.push_skipped += skipped_online(push_job, uids, away)
        self._enqueue_push(jobs)

    def _enqueue_push(self, jobs: list[dict]) -> None:
        """Push jobs only for users this host sees offline (a session online here is exactly
        presence's "online", grace included): a message to members who all have a live socket
        costs no job, no queue round trip and no presence read. The worker still checks
        presence for the rest (a session may have moved to another host meanwhile)."""
        if jobs and self.env.push is not None:
            self.env.spawn(self.env.push.enqueue(jobs), "push enqueue")

    def _outbox(self, replica_id: str) -> Outbox:
        box = self.outboxes.get(replica_id)
        if box is None:
            box = self.outboxes[replica_id] = Outbox(_OUTBOX_CAPACITY)
        return box

    async def fanout_endpoint(self) -> dict[str, Any]:
        """Where a gateway replica connects for its fan-out stream (actors/fanout_wire.py), and
        the token that proves it asked Ray: the listener starts on the first ask."""
        self._ensure_started()
        if self._listener is None:
            self._listener = await asyncio.start_server(self._serve_replica, self._address, 0)
        return {"host": self._address, "port": self._listener.sockets[0].getsockname()[1],
                "token": self._token}

    def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        # Logged once per hundred: a port scan or a flood must not flood the log too.
        if self.connections_refused % 100 == 0:
            log.warning("fan-out connection refused (%d so far): %s", self.connections_refused + 1, why)
        self.connections_refused += 1
        writer.close()

    async def _serve_calls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           hello: dict[str, Any]) -> None:
        """Calls from a gateway replica or a peer host over a link of their own (actors/host_rpc.py)."""
        try:
            await rpc.serve(reader, writer, self, self._token, hello.get("nonce"))
        except Exception as exc:     # a broken or hostile peer: its link ends, nothing else does
            log.warning("call link from %s ended: %r", hello.get("replica"), exc)
            writer.close()

    async def _serve_replica(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Write batches of (socket_ids, cid, seq, frame, forget) to one gateway replica, forever."""
        if self._awaiting_hello >= _MAX_AWAITING_HELLO:
            self._refuse(writer, "too many connections without a hello")
            return
        self._awaiting_hello += 1
        try:
            hello = await asyncio.wait_for(wire.read_hello(reader, self._token), _HELLO_S)
        except (wire.WireError, OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            self._refuse(writer, repr(exc))
            return
        finally:
            self._awaiting_hello -= 1
        if hello.get("rpc") is True:
            await self._serve_calls(reader, writer, hello)
            return
        replica_id = hello["replica"]
        box = self._outbox(replica_id)
        box.generation += 1
        mine = box.generation
        # The replica never writes after its hello: a read that ends means it is gone, even while
        # nothing is sent to it (its sessions are dropped at once, not at the next heartbeat).
        gone = asyncio.get_running_loop().create_task(reader.read(1))
        gone.add_done_callback(lambda _: box.wakeup.set())
        try:
            writer.write(wire.batch([]))     # tells the subscriber it is attached
            while not gone.done() and box.generation == mine:
                if not box.items:
                    try:
                        await asyncio.wait_for(box.wakeup.wait(), _HEARTBEAT_S)
                    except asyncio.TimeoutError:
                        writer.write(wire.batch([]))
                        await writer.drain()
                    continue
                writer.write(wire.batch(box.take(wire.BATCH_ITEMS)))
                await writer.drain()
        except (OSError, ConnectionError) as exc:
            log.info("fan-out stream to %s ended: %r", replica_id, exc)
        finally:
            gone.cancel()
            writer.close()
            if box.generation == mine:   # not re-subscribed meanwhile: the replica is gone
                self.outboxes.pop(replica_id, None)
                for session in self.registry.actors("user"):
                    if replica_id in session.connections:
                        asyncio.get_running_loop().create_task(
                            self.registry.call("user", session.uid, "drop_replica", replica_id))
