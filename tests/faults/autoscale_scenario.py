"""Autoscaling on one machine: load on raychat adds nodes, hosts follow, idle nodes go.

Run by tests/faults/test_autoscale.py against a head it started with Ray's fake multi-node
provider (``provider: type: fake_multinode``). The gateway's Serve autoscaling turns open
WebSockets (each one ongoing request) into replicas that need a CPU each; the head has one,
so the autoscaler adds worker nodes, and the directory starts a host on each. When the
sockets close, Serve scales the gateway down, the workers' hosts hand their keys over and
leave the view, the workers fall idle and the autoscaler removes them. Chat works before,
while and after.

Ray counts a node running any actor as busy, so hosts would keep a worker forever:
``hosts_leave_idle_node_s`` makes the directory take the hosts off a worker nothing else has
reserved anything on for that long, and only then does the autoscaler see it idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import httpx
import ray
from ray import serve

from actors.directory import current_view
from actors.membership import host_name
from raychat.config import Settings
from serve_app import Gateway
from storage.embedded import free_listen_port
from tests.chat_client import Socket, create_group, register

SOCKETS = 6            # with target_ongoing_requests 2: three replicas wanted, one fits on the head
LIMITS = {"login_attempts_per_ip": 1_000_000, "registrations_per_ip": 1_000_000, "message_burst": 1_000_000,
          "messages_per_s": 1_000_000.0, "ws_connections_per_user": 1000}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def alive_nodes() -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n["Alive"]]


def at_least(items: list, n: int) -> list | None:
    return items if len(items) >= n else None


def view_of(namespace: str, hosts: set[str]):
    view = current_view(namespace)
    return view if set(view.hosts) == hosts else None


async def until(pred, what: str, timeout_s: float):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        value = await asyncio.to_thread(pred)
        if value:
            return value
        assert loop.time() < end, f"timed out waiting until {what}"
        await asyncio.sleep(0.5)


async def chat_works(http: httpx.AsyncClient, ws_url: str, sender, receiver, cid: str, body: str) -> None:
    a, b = await Socket.open(ws_url, sender), await Socket.open(ws_url, receiver)
    try:
        cmid = await a.send(cid, body)
        await a.wait_for(lambda: cmid in a.acks, timeout=30)
        seq = a.acks[cmid]["seq"]
        await b.wait_for(lambda: b.bodies.get((cid, seq)) == body, timeout=30)
    finally:
        await a.close()
        await b.close()


async def scenario(base_url: str, ws_url: str, namespace: str, head: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        alice, bob = await register(http), await register(http)
        cid = await create_group(http, alice, [bob])
        await chat_works(http, ws_url, alice, bob, cid, "before")
        start = await asyncio.to_thread(current_view, namespace)
        assert set(start.hosts) == {host_name(head, 0)}, start
        log(f"idle: 1 node, hosts {list(start.hosts)}")

        t = time.monotonic()
        load = [await Socket.open(ws_url, alice) for _ in range(SOCKETS)]
        log(f"load: {SOCKETS} sockets open")
        nodes = await until(lambda: at_least(alive_nodes(), 3), "the autoscaler added 2 nodes", 150)
        log(f"nodes added: {len(nodes)} alive after {time.monotonic() - t:.0f} s")
        want = {host_name(n, 0) for n in nodes}
        grown = await until(lambda: view_of(namespace, want), "the hosts followed the new nodes", 60)
        log(f"hosts followed: {list(grown.hosts)} after {time.monotonic() - t:.0f} s")
        await chat_works(http, ws_url, alice, bob, cid, "while scaled out")

        t = time.monotonic()
        for s in load:
            await s.close()
        log("load removed")
        # The workers' replicas go; then their hosts hand their keys over and leave (Ray never
        # counts a node running an actor as idle); then the autoscaler removes the idle nodes.
        shrunk = await until(lambda: view_of(namespace, set(start.hosts)), "the workers' hosts left", 150)
        log(f"hosts left the idle workers: {list(shrunk.hosts)} after {time.monotonic() - t:.0f} s")
        await until(lambda: len(alive_nodes()) == 1, "the autoscaler removed the idle nodes", 150)
        log(f"idle nodes removed after {time.monotonic() - t:.0f} s")
        await chat_works(http, ws_url, alice, bob, cid, "after")
        events = (await http.get(f"/v1/conversations/{cid}/events", headers=alice.auth)).json()["events"]
        assert [e["body"] for e in events if e["kind"] == "message"] == ["before", "while scaled out", "after"]
        log("ok")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--mongodb-uri", required=True)
    p.add_argument("--redis-url", required=True)
    a = p.parse_args()
    namespace = f"raychat-autoscale-{os.getpid()}"
    settings = Settings(mongodb_uri=a.mongodb_uri, redis_url=a.redis_url, mongodb_db=f"autoscale_{os.getpid()}",
                        jwt_secret="autoscale-secret-" + "x" * 40, hosts=1, namespace=namespace,
                        hosts_leave_idle_node_s=3,
                        store_timeout_ms=2000, log_level="WARNING", **LIMITS)
    ray.init(address=a.address, namespace=namespace, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0", "PYTHONPATH": os.environ["PYTHONPATH"]}})
    try:
        head = ray.get_runtime_context().get_node_id()
        port = free_listen_port()
        # One proxy, on the head: every fake node shares this machine's ports.
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        app = Gateway.options(
            max_ongoing_requests=settings.max_connections_per_replica,
            ray_actor_options={"num_cpus": 1},      # a replica takes a node's CPU: replicas need nodes
            autoscaling_config={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2,
                                "metrics_interval_s": 0.5, "look_back_period_s": 2,
                                "upscale_delay_s": 0, "downscale_delay_s": 2})
        serve.run(app.bind(settings.to_dict()), name="raychat", route_prefix="/")
        log("raychat up")
        asyncio.run(scenario(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", namespace, head))
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


if __name__ == "__main__":
    sys.exit(main())
