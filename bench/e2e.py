"""End to end through Ray + Serve + the gateway: group fan-out at a fixed send rate.

One process plays every client with asyncio: users registered over HTTP, groups of
``group_size``, one WebSocket per user. Every user sends to its group at ``rate``
messages/s on an open-loop schedule; each ``event`` frame is matched to its send by
``client_msg_id`` and timed with the same monotonic clock. Deliveries counted per
(socket, conversation, seq): a repeat is a duplicate, a missing one is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from raychat.client import Client as Sdk

from .cpu import CpuWindow
from .stats import summary_ms

log = logging.getLogger("bench.e2e")

PASSWORD = "bench horse battery staple"
BODY_PAD = "x" * 48      # a short chat line
STALL_S = 5.0


@dataclass
class Sent:
    cid: str
    members: int
    t_send: float
    in_window: bool
    t_ack: float | None = None
    seq: int | None = None
    receipts: int = 0


@dataclass
class Client:
    index: int
    user_id: str
    token: str
    cid: str = ""
    ws: Any = None
    url: str = ""
    seen: set = field(default_factory=set)          # (cid, seq) this user has received, on any socket
    conn_seen: set = field(default_factory=set)     # the same, on the current socket only
    pong: asyncio.Event = field(default_factory=asyncio.Event)
    live: asyncio.Event = field(default_factory=asyncio.Event)   # set while a socket is open
    ping_at: float | None = None
    closing: bool = False                           # we are closing it: do not reconnect
    close_codes: list = field(default_factory=list)  # codes of the closes the server initiated

    def since(self) -> dict[str, int]:
        """The highest seq up to which this user has every event: what `hello.since` resumes from."""
        n = 0
        while (self.cid, n + 1) in self.seen:
            n += 1
        return {self.cid: n}


class Load:
    """The shared ledger every reader and sender writes to."""

    def __init__(self) -> None:
        self.sent: dict[str, Sent] = {}
        self.latencies: list[float] = []      # send -> event, messages sent in the window
        self.arrivals: list[float] = []       # arrival time of every delivery of a window message
        self.duplicates = 0                   # the same (cid, seq) twice on one socket: a bug
        self.redelivered = 0                  # again after a resume: expected, the client dedupes
        self.unknown = 0
        self.reconnects = 0
        self.refused: set[str] = set()        # client_msg_ids answered with an error frame
        self.errors: dict[str, int] = {}
        self.send_lag: list[float] = []       # actual send time - scheduled time (client saturation)
        self.pings: list[float] = []          # ping -> pong over a loaded socket: the path without actors
        self.window: tuple[float, float] = (0.0, 0.0)

    def on_frame(self, client: Client, raw: str) -> None:
        now = time.perf_counter()
        f = json.loads(raw)
        kind = f.get("type")
        if kind == "event":
            key = (f["conversation_id"], f["seq"])
            if key in client.conn_seen:
                self.duplicates += 1
                return
            client.conn_seen.add(key)
            if key in client.seen:
                self.redelivered += 1
                return
            client.seen.add(key)
            s = self.sent.get(f.get("client_msg_id") or "")
            if s is None:
                self.unknown += 1
                return
            s.receipts += 1
            s.seq = f["seq"]
            if s.in_window:
                self.latencies.append(now - s.t_send)
                self.arrivals.append(now)
        elif kind == "ack":
            s = self.sent.get(f["client_msg_id"])
            if s is not None and s.t_ack is None:
                s.t_ack, s.seq = now, f["seq"]
        elif kind == "pong":
            client.pong.set()
            if client.ping_at is not None:
                if self.window[0] <= client.ping_at <= self.window[1]:
                    self.pings.append(now - client.ping_at)
                client.ping_at = None
        elif kind == "error":
            self.errors[f.get("code", "?")] = self.errors.get(f.get("code", "?"), 0) + 1
            if f.get("ref") in self.sent:
                self.refused.add(f["ref"])


async def _register(http: httpx.AsyncClient, i: int, run: str, sem: asyncio.Semaphore) -> Sdk:
    sdk = Sdk(str(http.base_url), http=http)
    async with sem:
        await sdk.register(f"b{run}_{i}", PASSWORD)
        await sdk.login(f"b{run}_{i}", PASSWORD)
    return sdk


async def setup_users(base_url: str, users: int, group_size: int) -> tuple[list[Client], float]:
    """Register and log in every user with the SDK, then make the groups (the first member owns
    each). The measured sockets stay raw (``_connect``): the SDK would hide what the benchmark
    counts, a repeated seq on one socket, and add its own work to every latency."""
    t = time.perf_counter()
    run = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(4)   # argon2id costs ~20 MiB and tens of ms per hash: do not swamp 2 cores
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        sdks = list(await asyncio.gather(*(_register(http, i, run, sem) for i in range(users))))
        clients = [Client(i, s.user_id, s.access_token) for i, s in enumerate(sdks)]
        for lo in range(0, users, group_size):
            members = [c.user_id for c in clients[lo + 1:lo + group_size]]
            conv = await sdks[lo].create_group(f"bench {lo // group_size}", members)
            for c in clients[lo:lo + group_size]:
                c.cid = conv["conversation_id"]
    return clients, time.perf_counter() - t


async def _connect(c: Client, since: dict[str, int] | None) -> None:
    ws = await websockets.connect(c.url + "/v1/ws", max_size=2**22)
    hello: dict[str, Any] = {"type": "hello", "token": c.token}
    if since:
        hello["since"] = since
    await ws.send(json.dumps(hello))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"no welcome: {welcome}")
    c.ws, c.conn_seen = ws, set()
    c.live.set()


async def _reader(load: Load, c: Client) -> None:
    """Read until we close; a socket the server closes is reopened with `since`, as a client must."""
    while True:
        try:
            async for raw in c.ws:
                load.on_frame(c, raw)
        except websockets.ConnectionClosed:
            pass
        c.live.clear()
        if c.closing:
            return
        c.close_codes.append(c.ws.close_code or 1006)
        while not c.closing:
            await asyncio.sleep(0.5)
            try:
                await _connect(c, c.since())
                load.reconnects += 1
                break
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError, RuntimeError) as exc:
                log.info("reconnect of %s failed: %r", c.index, exc)
        if c.closing:
            return


async def open_sockets(ws_url: str, clients: list[Client], load: Load) -> list[asyncio.Task]:
    """One socket per user. A pong proves the gateway finished registering the socket with the
    user's session (the read loop starts only after that), so no live event can miss it."""
    readers = []
    for c in clients:
        c.url, c.closing, c.close_codes = ws_url, False, []
        c.pong.clear()
        await _connect(c, None)
        readers.append(asyncio.get_running_loop().create_task(_reader(load, c)))
        await c.ws.send('{"type":"ping"}')
    await asyncio.wait_for(asyncio.gather(*(c.pong.wait() for c in clients)), 30)
    return readers


async def close_sockets(clients: list[Client], readers: list[asyncio.Task]) -> None:
    for c in clients:
        c.closing = True
        await c.ws.close()
    await asyncio.wait(readers, timeout=5)


async def _sender(load: Load, c: Client, members: int, rate: float, start: float, window_start: float,
                  end: float) -> None:
    period = 1.0 / rate
    due = start + random.uniform(0, period)     # spread the users over the period
    k = 0
    while due < end:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        load.send_lag.append(now - due)
        cmid = f"{c.index}-{k}-{uuid.uuid4().hex[:6]}"
        frame = json.dumps({"type": "send", "conversation_id": c.cid, "client_msg_id": cmid,
                            "body": f"{cmid} t={time.time():.6f} {BODY_PAD}"})
        load.sent[cmid] = Sent(c.cid, members, now, due >= window_start)
        while True:   # a socket the server closed: wait for the reader to reopen it, send again
            try:
                await c.ws.send(frame)
                break
            except websockets.ConnectionClosed:
                await c.live.wait()
        k += 1
        due += period


async def _pinger(c: Client, period: float, end: float) -> None:
    """One ping in flight at a time: pong answers in the gateway, never reaching an actor host."""
    await asyncio.sleep(random.uniform(0, period))
    while time.perf_counter() < end:
        if c.ping_at is None:
            c.ping_at = time.perf_counter()
            await c.ws.send('{"type":"ping"}')
        await asyncio.sleep(period)


async def _probe_hosts(clients: list[Client], host_names: list[str], namespace: str, window: tuple[float, float],
                       out: dict[str, list[float]]) -> None:
    """From the driver, during the window: a host method that skips the mailboxes (``stats``) and a
    conversation call that queues behind the sends in its mailbox (``members``), ten times a second."""
    import ray

    from actors.placement import owner
    hosts = {name: ray.get_actor(name, namespace=namespace) for name in host_names}
    cids = sorted({c.cid for c in clients})
    await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
    i = 0
    while time.perf_counter() < window[1]:
        cid = cids[i % len(cids)]
        h = hosts[owner(("conv", cid), host_names)]
        t = time.perf_counter()
        await h.stats.remote()
        out["host_stats_call"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await h.call.remote("conv", cid, "members")
        out["host_members_call"].append(time.perf_counter() - t)
        i += 1
        await asyncio.sleep(0.1)


async def _host_stats(host_names: list[str], namespace: str) -> dict[str, dict]:
    import ray
    out: dict[str, dict] = {}
    for name in host_names:
        out[name] = await ray.get_actor(name, namespace=namespace).stats.remote()
    return out


async def run_rate(clients: list[Client], load: Load, *, rate: float, group_size: int, warmup_s: float,
                   duration_s: float, drain_s: float, host_names: list[str], namespace: str) -> dict[str, Any]:
    before = await _host_stats(host_names, namespace)
    cpu0 = time.process_time()
    start = time.perf_counter() + 0.2
    window_start = start + warmup_s
    end = window_start + duration_s
    load.window = (window_start, end)
    pingers = clients[::group_size]       # one socket per group pings twice a second

    async def measure_cpu() -> dict[str, float]:
        await asyncio.sleep(window_start - time.perf_counter())
        window = CpuWindow().start()
        await asyncio.sleep(end - time.perf_counter())
        return window.stop()

    cpu_task = asyncio.get_running_loop().create_task(measure_cpu())
    probes: dict[str, list[float]] = {"host_stats_call": [], "host_members_call": []}
    probe = [_probe_hosts(clients, host_names, namespace, load.window, probes)] if host_names else []
    await asyncio.gather(*(_sender(load, c, group_size, rate, start, window_start, end) for c in clients),
                         *(_pinger(c, 0.5, end) for c in pingers), *probe)
    cpu = await cpu_task
    sent_end = time.perf_counter()
    # Drain: wait until every send is acknowledged and delivered to all members, or give up.
    # Drain: wait until every send is answered and delivered to all members; give up at drain_s,
    # or once nothing has moved for STALL_S (then what is missing is not just late).
    deadline = sent_end + drain_s
    progress, moved_at, complete = -1, time.perf_counter(), False
    while time.perf_counter() < deadline:
        if all(k in load.refused or (s.t_ack is not None and s.receipts >= s.members)
               for k, s in load.sent.items()):
            complete = True
            break
        now_progress = sum(s.receipts for s in load.sent.values()) + len(load.refused) + \
            sum(1 for s in load.sent.values() if s.t_ack is not None)
        if now_progress != progress:
            progress, moved_at = now_progress, time.perf_counter()
        elif time.perf_counter() - moved_at > STALL_S:
            break
        await asyncio.sleep(0.05)
    drained_s = time.perf_counter() - sent_end
    client_cpu = (time.process_time() - cpu0) / (time.perf_counter() - start)
    after = await _host_stats(host_names, namespace)

    msgs = list(load.sent.values())
    window_msgs = [s for s in msgs if s.in_window]
    # Accepted = acknowledged, or delivered to someone (stored, its ack lost with a closed socket).
    # Each accepted event must reach every member, through a live event or a resume: a miss is lost.
    groups: dict[str, list[Client]] = {}
    for c in clients:
        groups.setdefault(c.cid, []).append(c)
    accepted = [s for s in msgs if s.seq is not None]
    lost = sum(1 for s in accepted for c in groups[s.cid] if (s.cid, s.seq) not in c.seen)
    in_window_arrivals = sum(1 for t in load.arrivals if window_start <= t <= end)
    acks = [s.t_ack - s.t_send for s in window_msgs if s.t_ack is not None]
    calls_out = sum(after[h]["peer_calls_out"] - before[h]["peer_calls_out"] for h in host_names)
    lag = sorted(load.send_lag)
    return {
        "rate_per_user": rate,
        "users": len(clients),
        "group_size": group_size,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "messages_sent": len(msgs),
        "messages_in_window": len(window_msgs),
        "messages_acked": sum(1 for s in msgs if s.t_ack is not None),
        "offered_deliveries_per_s": round(len(clients) * rate * group_size, 1),
        "deliveries_per_s": round(in_window_arrivals / duration_s, 1),
        "send_to_deliver_ms": summary_ms(load.latencies),
        "send_to_ack_ms": summary_ms(acks),
        "ping_pong_ms": summary_ms(load.pings),
        "driver_to_host_ms": {k: summary_ms(v) for k, v in probes.items()},
        "messages_accepted": len(accepted),
        "messages_refused": len(msgs) - len(accepted),
        # Answered with an error ("nothing was accepted") yet stored and delivered: a protocol breach.
        "refused_but_stored": sum(1 for k, s in load.sent.items() if k in load.refused and s.seq is not None),
        "deliveries_received": sum(s.receipts for s in msgs),
        "lost": lost,
        "redelivered_after_resume": load.redelivered,
        "reconnects": load.reconnects,
        "duplicates": load.duplicates,
        "unknown_events": load.unknown,
        "error_frames": dict(load.errors),
        "closed_sockets": sum(len(c.close_codes) for c in clients),
        "close_codes": sorted({code for c in clients for code in c.close_codes}),
        "drain_s": round(drained_s, 2),
        "drain_end": "complete" if complete else ("stalled" if time.perf_counter() < deadline else "timed out"),
        "client_cpu_fraction": round(client_cpu, 3),
        "cpu_during_window": cpu,
        "client_send_lag_ms": {"p50": round(lag[len(lag) // 2] * 1000, 2),
                               "p99": round(lag[int(len(lag) * 0.99)] * 1000, 2),
                               "max": round(lag[-1] * 1000, 2)} if lag else {},
        "host_peer_calls_out": calls_out,
        "host_peer_calls_out_per_message": round(calls_out / max(1, len(msgs)), 3),
        "ray_calls_per_message_known": round((len(msgs) + calls_out) / max(1, len(msgs)), 3),
        "host_stats_after": after,
    }


def scan_logs(session_dir: str) -> dict[str, Any]:
    """Errors and warnings the run left in Ray's logs (Serve's, and the host actors' worker logs)."""
    logs = Path(session_dir) / "logs"
    counts: dict[str, int] = {}
    samples: list[str] = []
    files = list((logs / "serve").glob("*.log")) + list(logs.glob("worker-*.err")) + list(logs.glob("worker-*.out"))
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            for tag in ("ERROR", "Traceback", "WARNING"):
                if tag in line:
                    counts[tag] = counts.get(tag, 0) + 1
                    if tag != "WARNING" and len(samples) < 8:
                        samples.append(f"{path.relative_to(logs)}: {line.strip()[:300]}")
                    break
    return {"session_dir": session_dir, "files_scanned": len(files), "counts": counts, "samples": samples}


def run(mongo_uri: str, redis_url: str, data_dir: Path, *, users: int, group_size: int, rates: list[float],
        warmup_s: float, duration_s: float, drain_s: float, floor_rates: list[float],
        worker_niceness: int | None = None) -> dict[str, Any]:
    import ray
    from ray import serve

    from actors.directory import current_view
    from raychat.config import Settings
    from serve_app import build_app
    from storage.embedded import free_listen_port

    namespace = f"raychat-bench-{os.getpid()}"
    settings = Settings(mongodb_uri=mongo_uri, redis_url=redis_url, mongodb_db=f"bench_e2e_{os.getpid()}",
                        jwt_secret="bench-secret-" + "x" * 40, data_dir=data_dir, hosts=2,
                        namespace=namespace, log_level="WARNING",
                        # One IP plays every user: lift the abuse limits far above the offered load
                        # (they are still checked on every message, so their cost is measured).
                        registrations_per_ip=1_000_000, login_attempts_per_ip=1_000_000,
                        message_burst=1_000_000, messages_per_s=1_000_000.0)
    port = free_listen_port()
    out: dict[str, Any] = {"hosts": settings.hosts, "gateway_replicas": settings.gateway_replicas,
                           "worker_niceness": "Ray default (15)" if worker_niceness is None else worker_niceness}
    t = time.perf_counter()
    repo = str(Path(__file__).resolve().parent.parent)   # so Serve can import bench.serve_floor
    # Ray starts its workers (gateway, hosts, proxy) at nice 15 by default, below the store, this
    # driver and anything else on the machine; --worker-niceness 0 puts them level.
    system_config = {} if worker_niceness is None else {"worker_niceness": worker_niceness}
    ray.init(num_cpus=2, include_dashboard=False, namespace=namespace, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0", "PYTHONPATH": repo}},
             _system_config=system_config)
    session_dir = ray._private.worker.global_worker.node.get_session_dir_path()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings), name="raychat", route_prefix="/")
        out["startup_s"] = round(time.perf_counter() - t, 1)

        async def measure(clients: list[Client], ws_url: str, rate: float, hosts: list[str]) -> dict[str, Any]:
            load = Load()
            readers = await open_sockets(ws_url, clients, load)
            try:
                return await run_rate(clients, load, rate=rate, group_size=group_size, warmup_s=warmup_s,
                                      duration_s=duration_s, drain_s=drain_s, host_names=hosts,
                                      namespace=namespace)
            finally:
                await close_sockets(clients, readers)
                log.info("%s at %s msg/s per user done", ws_url, rate)

        async def drive() -> None:
            clients, setup_s = await setup_users(f"http://127.0.0.1:{port}", users, group_size)
            out["setup_users_s"] = round(setup_s, 1)
            hosts = list(current_view(namespace).hosts)
            out["runs"] = [await measure(clients, f"ws://127.0.0.1:{port}", rate, hosts) for rate in rates]

        asyncio.run(drive())
        if floor_rates:
            from .serve_floor import ServeFloor
            serve.run(ServeFloor.bind(), name="floor", route_prefix="/floor")
            # The floor has no auth: the "token" names the group the socket joins.
            floor_clients = [Client(i, f"floor-user-{i}", f"g{i // group_size}", f"g{i // group_size}")
                             for i in range(users)]

            async def drive_floor() -> list[dict[str, Any]]:
                return [await measure(floor_clients, f"ws://127.0.0.1:{port}/floor", rate, [])
                        for rate in floor_rates]

            out["serve_floor_runs"] = asyncio.run(drive_floor())
        out["logs"] = scan_logs(session_dir)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return out
