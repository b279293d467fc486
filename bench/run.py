"""Benchmark v0: `python -m bench.run [--quick] [--out bench/results.json]`.

Starts its own SecantusDB (on disk in a temp dir, fsync per commit: as `raychat up` runs it) and
redis-server, then measures (a) memory per idle activated conversation actor and after
passivation, (b) cold activation and warm call latency, (c) end-to-end group fan-out through
Ray + Serve + the gateway at fixed send rates, (d) Ray calls per message. Prints a Markdown
table and writes every number, with the machine it ran on, as JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from raychat.config import Settings
from storage.embedded import start_mongo, start_redis

from . import actor_mem, e2e
from .cpu import CpuWindow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one rate, 5 s: a smoke run (~1 min)")
    p.add_argument("--out", type=Path, default=Path("bench/results.json"), help="where the JSON goes")
    p.add_argument("--actors", type=int, default=5000, help="conversations activated for the memory figure")
    p.add_argument("--cold", type=int, default=2000, help="conversations timed for cold activation")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--rates", default="1,5", help="messages/s per user, comma-separated; one e2e run each")
    p.add_argument("--floor-rates", default="1,5",
                   help="rates for the Serve WebSocket floor (no actors, no store); empty to skip")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per rate")
    p.add_argument("--drain", type=float, default=20.0, help="max seconds to wait for stragglers")
    p.add_argument("--worker-niceness", type=int, default=None,
                   help="nice level for Ray's workers (Ray's default is 15, below every normal process)")
    p.add_argument("--source-note", default="",
                   help="what code this is, when not run from a git checkout (e.g. 'git archive of <commit>')")
    p.add_argument("--skip-actors", action="store_true")
    p.add_argument("--skip-e2e", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.actors, args.cold, args.rates, args.floor_rates = 1000, 300, "1", "1"
        args.warmup, args.duration = 2.0, 5.0
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    args.floor_rate_list = [float(r) for r in args.floor_rates.split(",") if r.strip()]
    return args


def machine() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal"))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent.parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"nproc": os.cpu_count(), "source": source_state(), "cpu": cpu, "mem_gib": round(mem_kb / 1024 / 1024, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "ray": version("ray"), "pymongo": version("pymongo"), "websockets": version("websockets"),
            "secantusdb": version("SecantusDB"), "redis_py": version("redis"), "git_commit": commit}


def source_state() -> dict[str, Any]:
    """Which code was measured: the commit, how many files differ from it, and a digest of the sources."""
    repo = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    files = sorted(p for d in ("actors", "gateway", "storage", "raychat") for p in (repo / d).rglob("*.py"))
    for path in [*files, repo / "serve_app.py"]:
        digest.update(str(path.relative_to(repo)).encode())
        digest.update(path.read_bytes())
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "actors", "gateway", "storage", "raychat",
                                "serve_app.py"], capture_output=True, text=True, cwd=repo, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return {"sources_sha256": digest.hexdigest()[:16], "files_changed_since_commit": len(dirty.splitlines())}


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}"


def _lat(d: dict[str, Any]) -> str:
    return f"{_ms(d.get('p50'))} / {_ms(d.get('p95'))} / {_ms(d.get('p99'))} / {_ms(d.get('max'))} ms"


def table(res: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    a = res.get("actors")
    if a:
        n = a["actors"]
        rows += [
            (f"memory per idle activated conversation actor (tracemalloc, {n:,}, 10 members)",
             f"{a['tracemalloc_bytes_per_idle_actor']:,.0f} B", "≤ 4,096 B"),
            ("  same, process RSS delta (noisy: reuses freed memory)", f"{a['rss_bytes_per_actor']:,.0f} B", ""),
            ("memory per passivated actor (after sweep + gc)",
             f"{a['tracemalloc_bytes_per_passivated_actor']:,.0f} B", "0"),
            ("  same, after sweep, before the cyclic gc ran",
             f"{a['tracemalloc_bytes_per_passivated_actor_before_gc']:,.0f} B", ""),
            ("cold activation p50 / p99 (in-process, load from store)",
             f"{_ms(a['cold_activation_ms']['p50'])} / {_ms(a['cold_activation_ms']['p99'])} ms", "p50 ≤ 5 ms"),
            ("warm call p50 / p99", f"{_ms(a['warm_call_ms']['p50'])} / {_ms(a['warm_call_ms']['p99'])} ms", ""),
            ("  store round trip meanwhile: mongo ping p50 / p99",
             f"{_ms(a['cold_activation_parts_ms']['mongo ping']['p50'])} / "
             f"{_ms(a['cold_activation_parts_ms']['mongo ping']['p99'])} ms", ""),
            ("  CPU cores taken by other processes during this part", f"{a['cpu']['other_processes_cores']:.2f}", ""),
        ]
    e = res.get("e2e") or {}
    for r in e.get("runs", []):
        tag = f"e2e {r['users']} users × {r['rate_per_user']:g} msg/s, groups of {r['group_size']}"
        d, k, p = r["send_to_deliver_ms"], r["send_to_ack_ms"], r["ping_pong_ms"]
        c = r["cpu_during_window"]
        rows += [
            (f"{tag}: deliveries/s (offered {r['offered_deliveries_per_s']:,.0f})",
             f"{r['deliveries_per_s']:,.0f}", ""),
            (f"{tag}: send→deliver p50 / p95 / p99 / max", _lat(d), "p99 ≤ 100 ms"),
            (f"{tag}: send→ack p50 / p99", f"{_ms(k.get('p50'))} / {_ms(k.get('p99'))} ms", ""),
            (f"{tag}: ping→pong p50 / p99 (gateway only, no actor)",
             f"{_ms(p.get('p50'))} / {_ms(p.get('p99'))} ms", ""),
            (f"{tag}: undelivered / duplicate deliveries (drain: {r['drain_end']} after {r['drain_s']:.0f} s)",
             f"{r['lost']} / {r['duplicates']}", "0 / 0"),
            (f"{tag}: sends not accepted (error frame or no answer) / sockets closed by the server, resumed",
             f"{r['messages_refused']} {r['error_frames'] or ''} / {r['closed_sockets']} {r['close_codes'] or ''}",
             "0 / 0"),
            (f"{tag}: sends answered with an error yet stored and delivered", f"{r['refused_but_stored']}", "0"),
            (f"{tag}: Ray calls per message, counted (1 send + host→host)",
             f"{r['ray_calls_per_message_known']:.2f} (the fan-out to replicas goes over sockets)", "O(hosts + replicas)"),
            (f"{tag}: CPU cores used: benchmark tree / other processes",
             f"{c['benchmark_tree_cores']:.2f} / {c['other_processes_cores']:.2f}", ""),
        ]
    for r in e.get("serve_floor_runs", []):
        tag = f"Serve floor (no actors, no store) × {r['rate_per_user']:g} msg/s"
        c = r["cpu_during_window"]
        rows += [
            (f"{tag}: deliveries/s", f"{r['deliveries_per_s']:,.0f}", ""),
            (f"{tag}: send→deliver p50 / p95 / p99 / max", _lat(r["send_to_deliver_ms"]), ""),
            (f"{tag}: lost / duplicate; CPU ours / others",
             f"{r['lost']} / {r['duplicates']}; {c['benchmark_tree_cores']:.2f} / {c['other_processes_cores']:.2f}",
             ""),
        ]
    out = ["| measure | result | goal |", "|---|---|---|"]
    out += [f"| {m} | {v} | {g} |" for m, v, g in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("bench")
    results: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "command": " ".join(["python", "-m", "bench.run", *(argv or sys.argv[1:])]),
                               "machine": machine(), "source_note": args.source_note,
                               "loadavg_start": os.getloadavg(),
                               "args": {k: v for k, v in vars(args).items() if k != "out"}}
    work = Path(tempfile.mkdtemp(prefix="raychat-bench-"))
    t0 = time.perf_counter()
    mongo = redis = None
    try:
        # As `raychat up` starts it: on disk, and fsync per commit when writes ask for the journal.
        sync = Settings().write_journal
        results["mongo_sync_on_commit"] = sync
        mongo = start_mongo(work / "mongo", log_path=work / "mongo.log", sync_on_commit=sync)
        redis = start_redis(work / "redis", log_path=work / "redis.log")
        if not args.skip_actors:
            log.info("actors: %d idle, %d cold", args.actors, args.cold)
            cpu = CpuWindow().start()
            results["actors"] = asyncio.run(actor_mem.run(mongo.uri, redis.uri, actors=args.actors,
                                                          cold=args.cold, members=args.group_size))
            results["actors"]["cpu"] = cpu.stop()
        if not args.skip_e2e:
            log.info("e2e: %d users, rates %s", args.users, args.rate_list)
            results["e2e"] = e2e.run(mongo.uri, redis.uri, work / "data", users=args.users,
                                     group_size=args.group_size, rates=args.rate_list, warmup_s=args.warmup,
                                     duration_s=args.duration, drain_s=args.drain,
                                     floor_rates=args.floor_rate_list, worker_niceness=args.worker_niceness)
    finally:
        for server in (redis, mongo):
            if server is not None:
                server.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    md = table(results)
    results["table_markdown"] = md
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    print(f"\n{m['nproc']} cores ({m['cpu']}), {m['mem_gib']} GiB, Python {m['python']}, Ray {m['ray']}, "
          f"SecantusDB {m['secantusdb']}; load average at start {results['loadavg_start'][0]:.2f}, "
          f"wall {results['wall_s']} s\n")
    print(md)
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
