"""Hosts follow the nodes: a node joins, then another leaves, while clients send and retry.

Run by tests/faults/test_elastic.py in a child process with its own RAY_TMPDIR (see
tests/faults/procs.py): a ``ray.cluster_utils.Cluster`` of a head and worker nodes, Serve
and the gateway on the head, raychat's hosts spread over the nodes by the directory.
Exits 0 when every check holds, else prints what failed and exits 1.

Checks: every send acknowledged, stored exactly once, at the seq its ack named; each
conversation's store seq gap-free; every member socket's deduped sequence equal to the
store's, with the stored bodies; hosts pinned to the node their name says; and the longest
send-to-ack time while the membership changed, printed and bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

import httpx
import ray
from ray import serve
from ray.cluster_utils import Cluster

from actors.directory import current_view
from actors.membership import DIRECTORY_NAME, host_name
from actors.placement import owner
from raychat.config import Settings
from serve_app import Gateway
from storage.embedded import free_listen_port
from tests.chat_client import Socket, create_group, register

GROUPS = 4
MEMBERS = 3            # per group; the first two send
SEND_EVERY_S = 0.15    # per sender
ACK_BOUND_S = 8.0      # the router retries a moving key for up to 8 s before answering `unavailable`
LIMITS = {"login_attempts_per_ip": 1_000_000, "registrations_per_ip": 1_000_000, "message_burst": 1_000_000,
          "messages_per_s": 1_000_000.0, "ws_connections_per_user": 1000}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Sender:
    """One member sending to one conversation as a careful client does: at most ``WINDOW``
    sends unacknowledged, each retried with the same client_msg_id after a retryable error
    (not before its ``retry_after_ms``, and at least ``RETRY_PAUSE_S`` later) or after
    ``RESEND_AFTER_S`` of silence. Times each send from its first try to its ack."""

    WINDOW = 4
    RETRY_PAUSE_S = 0.2
    RESEND_AFTER_S = 3.0
    RETRYABLE = {"unavailable", "rate_limited", "internal"}

    def __init__(self, sock: Socket, cid: str):
        self.sock, self.cid = sock, cid
        self.pending: dict[str, list] = {}          # cmid -> [body, next try at]
        self.first_sent: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.sent = self.retried = 0
        self._seen_errors = 0

    async def _send(self, cmid: str, body: str, now: float) -> None:
        self.pending[cmid] = [body, now + self.RESEND_AFTER_S]
        await self.sock.send(self.cid, body, cmid=cmid)

    async def send_new(self, now: float) -> None:
        if len(self.pending) < self.WINDOW:
            cmid = uuid.uuid4().hex
            self.first_sent[cmid] = now
            self.sent += 1
            await self._send(cmid, f"m{self.sent}-{cmid[:6]}", now)

    async def pump(self, now: float) -> None:
        for cmid in [c for c in self.pending if c in self.sock.acks]:
            del self.pending[cmid]
            self.latency[cmid] = now - self.first_sent[cmid]
        for err in self.sock.errors[self._seen_errors:]:
            entry = self.pending.get(err.get("ref"))
            if entry is not None:
                assert err["code"] in self.RETRYABLE, err
                entry[1] = now + max(self.RETRY_PAUSE_S, (err.get("retry_after_ms") or 0) / 1000)
        self._seen_errors = len(self.sock.errors)
        for cmid, (body, due) in list(self.pending.items()):
            if now >= due:
                self.retried += 1
                await self._send(cmid, body, now)


class Traffic:
    def __init__(self, senders: list[Sender]):
        self.senders = senders
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_send = loop.time()
        while not self._stop.is_set():
            now = loop.time()
            for s in self.senders:
                if now >= next_send:
                    await s.send_new(now)
                await s.pump(now)
            if now >= next_send:
                next_send = now + SEND_EVERY_S
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()

    async def drain(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while any(s.pending for s in self.senders):
            assert loop.time() < end, f"{sum(len(s.pending) for s in self.senders)} sends never acknowledged"
            for s in self.senders:
                await s.pump(loop.time())
            await asyncio.sleep(0.05)

    @property
    def acked(self) -> int:
        return sum(len(s.latency) for s in self.senders)

    def worst(self, since: float, until: float) -> float:
        """The longest send-to-ack time of the sends first tried in [since, until]."""
        return max((s.latency[c] for s in self.senders for c, t in s.first_sent.items()
                    if since <= t <= until and c in s.latency), default=0.0)

    def slowest(self, n: int) -> list[tuple[float, float]]:
        return sorted(((lat, s.first_sent[c]) for s in self.senders for c, lat in s.latency.items()),
                      reverse=True)[:n]


async def wait_view(namespace: str, pred, what: str, timeout_s: float = 90.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        try:
            view = await asyncio.to_thread(current_view, namespace)
        except Exception as exc:     # the directory is restarting
            view = exc
        if not isinstance(view, Exception) and pred(view):
            return view
        assert loop.time() < end, f"the view never {what}: {view}"
        await asyncio.sleep(0.2)


async def all_events(http: httpx.AsyncClient, user, cid: str) -> list[dict]:
    events, after = [], 0
    while True:
        r = await http.get(f"/v1/conversations/{cid}/events", headers=user.auth,
                           params={"after_seq": after, "limit": 1000})
        assert r.status_code == 200, r.text
        page = r.json()
        events += page["events"]
        if not page["has_more"]:
            return events
        after = events[-1]["seq"]


async def check_hosts_pinned(view, namespace: str) -> None:
    for name in view.hosts:
        info = await ray.get_actor(name, namespace=namespace).ready.remote()
        node = info["node_id"]
        assert any(host_name(node, i) == name for i in range(8)), f"{name} runs on node {node[:12]}"


async def scenario(cluster: Cluster, worker1, base_url: str, ws_url: str, namespace: str) -> None:
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        users = [await register(http) for _ in range(GROUPS * MEMBERS)]
        groups = [users[i * MEMBERS:(i + 1) * MEMBERS] for i in range(GROUPS)]
        cids = [await create_group(http, g[0], g[1:]) for g in groups]
        sockets = {u.user_id: await Socket.open(ws_url, u) for u in users}
        senders = [Sender(sockets[u.user_id], cid) for g, cid in zip(groups, cids) for u in g[:2]]
        traffic = Traffic(senders)
        before = await asyncio.to_thread(current_view, namespace)
        log(f"start: {len(before.hosts)} hosts {list(before.hosts)}")
        running = asyncio.ensure_future(traffic.run())
        await asyncio.sleep(3)

        # ---- a node joins: its two hosts (resource raychat_hosts: 2) enter the view --------
        t_add = loop.time()
        worker2 = await asyncio.to_thread(cluster.add_node, num_cpus=1, node_ip_address="127.0.0.1",
                                          resources={"raychat_hosts": 2})
        joined = {host_name(worker2.node_id, i) for i in range(2)}
        grown = await wait_view(namespace, lambda v: joined <= set(v.hosts), "took the new node's hosts")
        log(f"node {worker2.node_id[:12]} joined: {len(grown.hosts)} hosts after {loop.time() - t_add:.1f} s")
        await asyncio.sleep(4)
        t_added = loop.time()

        # ---- a node leaves: its host leaves the view and is stopped -------------------------
        t_remove = loop.time()
        left = {host_name(worker1.node_id, 0)}
        await asyncio.to_thread(cluster.remove_node, worker1)
        shrunk = await wait_view(namespace, lambda v: not (left & set(v.hosts)), "dropped the removed node's host")
        log(f"node {worker1.node_id[:12]} left: {len(shrunk.hosts)} hosts after {loop.time() - t_remove:.1f} s")
        await asyncio.sleep(4)
        t_removed = loop.time()

        # ---- the directory restarts: it finds the same hosts again, under a newer version ----
        directory = ray.get_actor(DIRECTORY_NAME, namespace=namespace)
        ray.kill(directory, no_restart=False)
        again = await wait_view(namespace, lambda v: v.version > shrunk.version, "came back after a restart")
        assert again.hosts == shrunk.hosts, f"a restarted directory changed the hosts: {again} vs {shrunk}"
        log(f"directory restarted: view {again.version} with the same {len(again.hosts)} hosts")
        await asyncio.sleep(2)

        traffic.stop()
        await running
        await traffic.drain(timeout_s=60)
        worst_add, worst_remove = traffic.worst(t_add, t_added), traffic.worst(t_remove, t_removed)
        errors: dict[str, int] = {}
        for sock in sockets.values():
            for f in sock.errors:
                errors[f"{f.get('code')}: {f.get('message')}"] = errors.get(f"{f.get('code')}: {f.get('message')}", 0) + 1
        log(f"error frames: {errors or 'none'}")
        log("slowest sends (latency s @ first try, s after the join began): "
            + ", ".join(f"{lat:.2f}@{at - t_add:+.1f}" for lat, at in traffic.slowest(8)))
        log(f"longest send-to-ack: {worst_add:.2f} s while a node joined, {worst_remove:.2f} s while one left; "
            f"{traffic.acked} sends, {sum(s.retried for s in senders)} retries")

        # ---- keys moved, and nothing was lost, duplicated or reused ---------------------------
        keys = [("conv", c) for c in cids] + [("user", u.user_id) for u in users]
        moved = sum(1 for k in keys if owner(k, before.hosts) != owner(k, shrunk.hosts))
        assert moved, "no key changed owner: the test proves nothing"
        assert not any(h in shrunk.hosts for h in left) and joined <= set(shrunk.hosts)
        await check_hosts_pinned(shrunk, namespace)
        for name in left:
            try:
                ray.get_actor(name, namespace=namespace)
                raise AssertionError(f"{name} outlived its node")
            except ValueError:
                pass
        for g, cid in zip(groups, cids):
            events = await all_events(http, g[0], cid)
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(1, len(seqs) + 1)), f"{cid}: gap or reuse in the store"
            by_cmid = {e["client_msg_id"]: e for e in events}
            assert len(by_cmid) == len(events), f"{cid}: a client_msg_id stored twice"
            group_senders = [s for s in senders if s.cid == cid]
            acked = {c: a for s in group_senders for c, a in s.sock.acks.items()}
            assert set(by_cmid) == set(acked), f"{cid}: stored {len(by_cmid)} events for {len(acked)} acked sends"
            for cmid, ack in acked.items():
                assert by_cmid[cmid]["seq"] == ack["seq"], f"{cid}: an ack named a seq the store gives another event"
            bodies = {e["seq"]: e["body"] for e in events}
            for u in g:
                sock = sockets[u.user_id]
                await sock.wait_for(lambda sock=sock, cid=cid: sock.deduped(cid) == seqs, timeout=60)
                assert all(sock.bodies[(cid, q)] == bodies[q] for q in seqs), f"{cid}: a socket saw another body"
        assert not [f for s in sockets.values() for f in s.errors if f.get("code") not in Sender.RETRYABLE]
        # Sessions that moved stay online: their old host passivated them without an offline.
        r = await http.get("/v1/presence", headers=users[0].auth, params={"user_ids": ",".join(u.user_id for u in users)})
        offline = [u for u, p in r.json().items() if p["status"] != "online"]
        assert not offline, f"{len(offline)} connected users show offline after their sessions moved"
        moved_out = 0
        for name in shrunk.hosts:
            moved_out += (await ray.get_actor(name, namespace=namespace).stats.remote())["moved_out"]
        log(f"ok: {len(cids)} conversations, {traffic.acked} events, {moved} of {len(keys)} keys moved, "
            f"{moved_out} passivated by hosts that lost them, lost=0 duplicates=0 reused=0")
        assert worst_add <= ACK_BOUND_S and worst_remove <= ACK_BOUND_S, "a send waited too long for its ack"
        for s in sockets.values():
            await s.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mongodb-uri", required=True)
    p.add_argument("--redis-url", required=True)
    a = p.parse_args()
    t0 = time.monotonic()
    namespace = f"raychat-elastic-{os.getpid()}"
    settings = Settings(mongodb_uri=a.mongodb_uri, redis_url=a.redis_url, mongodb_db=f"elastic_{os.getpid()}",
                        jwt_secret="elastic-secret-" + "x" * 40, hosts=1, namespace=namespace,
                        store_timeout_ms=2000, passivate_after_s=60, log_level="WARNING", **LIMITS)
    # The head runs the gateway (pinned by the raychat_gateway resource) and one host; the
    # removed worker must not take the gateway's sockets with it.
    # shutdown_at_exit=False: nodes are added from a worker thread (traffic goes on meanwhile),
    # where Ray cannot install its signal handlers; the test ends the processes by pid anyway.
    cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "resources": {"raychat_gateway": 1}})
    worker1 = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    log(f"cluster up in {time.monotonic() - t0:.1f} s")
    try:
        ray.init(address=cluster.address, namespace=namespace, log_to_driver=False,
                 runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0", "PYTHONPATH": os.environ["PYTHONPATH"]}})
        port = free_listen_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        app = Gateway.options(num_replicas=1, max_ongoing_requests=settings.max_connections_per_replica,
                              ray_actor_options={"num_cpus": 0, "resources": {"raychat_gateway": 0.01}})
        serve.run(app.bind(settings.to_dict()), name="raychat", route_prefix="/")
        log(f"raychat up in {time.monotonic() - t0:.1f} s")
        asyncio.run(scenario(cluster, worker1, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", namespace))
        log(f"done in {time.monotonic() - t0:.1f} s")
        return 0
    except AssertionError as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        try:
            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
