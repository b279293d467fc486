"""Accounts benchmark: `python -m bench.auth_bench [--quick] [--out bench/auth_results.json]`.

What a password costs. (a) argon2id hash and verify time at the parameters gateway/passwords.py
uses, one at a time and with every core hashing; (b) logins/s end to end through Ray Serve and the
gateway (HTTP, argon2 verify, the user read, a refresh token written, the access token signed) at
a few client concurrencies. The gateway runs as `raychat up` runs it: one replica, the embedded
SecantusDB on disk with an fsync per commit, and redis-server, in a temp dir. Prints a Markdown table
and writes every number, with the machine it ran on, as JSON. See bench/README.md, "Accounts".
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from gateway import passwords
from gateway.passwords import PasswordHasher
from storage.embedded import free_port, start_mongo, start_redis

from .stats import summary_ms

log = logging.getLogger("bench.auth")
PASSWORD = "correct horse battery staple"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.auth_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer hashes, 3 s per concurrency: a smoke run")
    p.add_argument("--hashes", type=int, default=200, help="hashes (and verifies) timed one at a time")
    p.add_argument("--concurrency", default="1,2,8,32", help="concurrent login clients, comma-separated")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of logins before each measurement")
    p.add_argument("--duration", type=float, default=15.0, help="seconds measured per concurrency")
    p.add_argument("--out", type=Path, default=Path("bench/auth_results.json"), help="where the JSON goes")
    args = p.parse_args(argv)
    if args.quick:
        args.hashes, args.warmup, args.duration = 30, 1.0, 3.0
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


# ---- (a) the hash alone ---------------------------------------------------------------------------

def hash_costs(n: int) -> dict[str, Any]:
    hasher = PasswordHasher()
    stored = hasher.hash(PASSWORD)
    hash_s, verify_s = [], []
    for _ in range(n):
        t = time.perf_counter()
        hasher.hash(PASSWORD)
        hash_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert hasher.verify(stored, PASSWORD)
        verify_s.append(time.perf_counter() - t)
    # argon2-cffi releases the GIL, so threads use every core: the most a node can verify.
    cores = os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(cores) as pool:
        t = time.perf_counter()
        list(pool.map(lambda _: hasher.verify(stored, PASSWORD), range(n)))
        parallel_s = time.perf_counter() - t
    return {"params": {"type": "argon2id", "memory_kib": passwords.MEMORY_COST_KIB,
                       "time_cost": passwords.TIME_COST, "parallelism": passwords.PARALLELISM},
            "hash": summary_ms(hash_s), "verify": summary_ms(verify_s),
            "verify_per_s_all_cores": round(n / parallel_s, 1), "threads": cores}


# ---- (b) logins through the gateway ---------------------------------------------------------------

async def register_users(base_url: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    names = [f"bench_{run}_{i}" for i in range(n)]
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        sem = asyncio.Semaphore(4)

        async def one(name: str) -> None:
            async with sem:
                r = await http.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
                r.raise_for_status()

        await asyncio.gather(*(one(name) for name in names))
    return names


async def login_load(base_url: str, names: list[str], clients: int, warmup_s: float, duration_s: float) -> dict:
    """``clients`` loops, each logging one user in again and again; only the window after warm-up counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
        start = time.perf_counter()
        window = (start + warmup_s, start + warmup_s + duration_s)

        async def client(i: int) -> None:
            body = {"username": names[i % len(names)], "password": PASSWORD}
            while (t := time.perf_counter()) < window[1]:
                r = await http.post("/v1/auth/login", json=body)
                done = time.perf_counter()
                if t >= window[0] and done <= window[1]:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        latencies.append(done - t)

        await asyncio.gather(*(client(i) for i in range(clients)))
    return {"clients": clients, "logins_per_s": round(len(latencies) / duration_s, 1),
            "latency": summary_ms(latencies), "statuses": statuses}


async def single_path_costs(base_url: str, name: str, n: int) -> dict[str, Any]:
    """One request at a time: where a login's time goes. /healthz is the Serve round trip alone; a
    wrong password adds the user read, the argon2 verify and the failed-attempt counters; a good one
    adds the refresh token written (fsynced) and the access token signed instead of the counters."""
    out: dict[str, Any] = {}
    wrong = {"username": name, "password": "wrong " + PASSWORD}
    right = {"username": name, "password": PASSWORD}
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        for label, method, path, body, want in (("healthz", "GET", "/healthz", None, 200),
                                                ("login_wrong_password", "POST", "/v1/auth/login", wrong, 401),
                                                ("login_ok", "POST", "/v1/auth/login", right, 200)):
            took = []
            for _ in range(n):
                t = time.perf_counter()
                r = await http.request(method, path, json=body)
                took.append(time.perf_counter() - t)
                assert r.status_code == want, (path, r.status_code, r.text)
            out[label] = summary_ms(took)
    return out


def gateway_runs(work: Path, levels: list[int], warmup_s: float, duration_s: float) -> dict[str, Any]:
    import ray
    from ray import serve

    from raychat.config import Settings
    from serve_app import build_app

    mongo = start_mongo(work / "mongo", log_path=work / "mongo.log", sync_on_commit=True)
    redis = start_redis(work / "redis", log_path=work / "redis.log")
    namespace = f"raychat-authbench-{os.getpid()}"
    # One IP plays every client, so the per-IP limits are lifted (they are still checked on each
    # login, so their cost is in the number). Successful logins never count against them anyway.
    settings = Settings(mongodb_uri=mongo.uri, redis_url=redis.uri, mongodb_db="authbench",
                        jwt_secret="bench-secret-" + "x" * 40, data_dir=work / "data", namespace=namespace,
                        log_level="WARNING", registrations_per_ip=1_000_000, login_attempts_per_ip=1_000_000,
                        login_attempts_per_account=1_000_000)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"gateway_replicas": settings.gateway_replicas, "store": "SecantusDB on disk, fsync "
                           "per commit (as raychat up runs it)", "runs": []}
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, namespace=namespace, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0"}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings), name="raychat", route_prefix="/")
        t = time.perf_counter()
        names = asyncio.run(register_users(base_url, max(levels)))
        out["registrations_per_s"] = round(len(names) / (time.perf_counter() - t), 1)
        out["one_at_a_time"] = asyncio.run(single_path_costs(base_url, names[0], 50))
        for clients in levels:
            log.info("logins with %d concurrent clients", clients)
            out["runs"].append(asyncio.run(login_load(base_url, names, clients, warmup_s, duration_s)))
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            redis.stop()
            mongo.stop()
    return out


# ---- report ---------------------------------------------------------------------------------------

def table(res: dict[str, Any]) -> str:
    h = res["hash"]
    p = h["params"]
    params = f"m={p['memory_kib']} KiB, t={p['time_cost']}, p={p['parallelism']}"
    rows = ["| measure | result |", "|---|---|",
            f"| argon2id hash ({params}), one at a time | p50 {h['hash']['p50']:.1f} ms, "
            f"p99 {h['hash']['p99']:.1f} ms |",
            f"| argon2id verify, one at a time | p50 {h['verify']['p50']:.1f} ms, "
            f"p99 {h['verify']['p99']:.1f} ms |",
            f"| argon2id verifies/s, {h['threads']} threads (every core) | {h['verify_per_s_all_cores']:.0f} |"]
    g = res.get("gateway")
    if g:
        rows.append(f"| registrations/s, 4 concurrent clients | {g['registrations_per_s']:.1f}/s |")
        one = g["one_at_a_time"]
        for label, key in (("`GET /healthz` (the Serve round trip)", "healthz"),
                           ("login, wrong password", "login_wrong_password"), ("login", "login_ok")):
            rows.append(f"| {label}, one at a time | p50 {one[key]['p50']:.1f} ms, p99 {one[key]['p99']:.1f} ms |")
        for run in g["runs"]:
            lat = run["latency"]
            other = {k: v for k, v in run["statuses"].items() if k != 200}
            note = f"; non-200: {other}" if other else ""
            rows.append(f"| logins/s, {run['clients']} concurrent client{'s' if run['clients'] > 1 else ''} | "
                        f"**{run['logins_per_s']:.1f}**/s (latency p50 {lat.get('p50', float('nan')):.0f} ms, "
                        f"p99 {lat.get('p99', float('nan')):.0f} ms){note} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from .run import machine

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "command": " ".join(["python", "-m", "bench.auth_bench", *(argv or sys.argv[1:])]),
                               "machine": machine(), "loadavg_start": os.getloadavg(),
                               "args": {k: v for k, v in vars(args).items() if k != "out"}}
    log.info("argon2id: %d hashes and verifies", args.hashes)
    results["hash"] = hash_costs(args.hashes)
    work = Path(tempfile.mkdtemp(prefix="raychat-authbench-"))
    try:
        results["gateway"] = gateway_runs(work, args.levels, args.warmup, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    md = table(results)
    results["table_markdown"] = md
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    print(f"\n{m['nproc']} cores ({m['cpu']}), Python {m['python']}, Ray {m['ray']}; "
          f"load average at start {results['loadavg_start'][0]:.2f}, at end {results['loadavg_end'][0]:.2f}\n")
    print(md)
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
