"""raychat against its peers, side by side: ``python -m bench.compare [--quick]``.

One command runs the same scenarios (bench/load.py) against raychat and each peer, one target at
a time on this machine: it starts the target's servers, runs each scenario as its own load
process (``python -m bench.load``), stops the target by pid, and goes on to the next. Then it
writes ``bench/results-compare.json`` and prints the Markdown table of bench/README.md.

Targets and how each is started:

    raychat     ``raychat up`` (Ray, Serve, the gateway, the hosts, the push worker), with its stores
                started here as ``raychat up`` starts them: SecantusDB on disk with an fsync per
                commit, and redis-server. The per-IP and per-user abuse limits are lifted: one
                client IP plays every user (they are still checked on every message).
    socketio    bench/peers/socketio_server.py under uvicorn, 2 workers, redis-server
    starlette   bench/peers/starlette_server.py under uvicorn, 2 workers, redis-server
    websockets  bench/peers/websockets_server.py, one process

A target's RSS and CPU are read over its process tree plus its stores' processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil

from storage.embedded import EmbeddedServer, free_listen_port, start_mongo, start_redis

from .load_wire import Member, make_wire

TARGETS = ("raychat", "socketio", "starlette", "websockets")
SCENARIOS = ("direct", "group10", "group100", "group1000", "storm", "idle10k")
REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 300.0        # raychat up on a busy 2-core box: Ray, Serve, the hosts
STOP_TIMEOUT_S = 40.0          # raychat up promises to be gone within 30 s of SIGTERM
SCENARIO_TIMEOUT_S = 900.0
JWT_SECRET = "bench-compare-" + "x" * 40
# One client IP plays every user: lift the limits far above the offered load.
RAYCHAT_LIMITS = {"RAYCHAT_REGISTRATIONS_PER_IP": "1000000", "RAYCHAT_LOGIN_ATTEMPTS_PER_IP": "1000000",
                  "RAYCHAT_MESSAGE_BURST": "1000000", "RAYCHAT_MESSAGES_PER_S": "1000000"}
# Two gateway replicas, as serve_config.yaml's minimum and like the peers' two uvicorn workers:
# a group's frames are written by two processes at once instead of one.
RAYCHAT_PROCESSES = {"RAYCHAT_GATEWAY_REPLICAS": "2"}


class Running:
    """A started target: its URL, the load generator's extra flags, and what to stop."""

    def __init__(self, name: str, url: str, proc: subprocess.Popen, stores: list[EmbeddedServer],
                 load_args: list[str], log_path: Path):
        self.name, self.url, self.proc, self.stores, self.load_args = name, url, proc, stores, load_args
        self.log_path = log_path
        self.seen: dict[int, float] = {}       # pid -> create_time of every descendant seen

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *(s.pid for s in self.stores)]

    def remember(self) -> None:
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(p.pid, p.create_time())
        except psutil.Error:
            pass

    def stop(self) -> dict[str, Any]:
        """SIGTERM to the target, SIGKILL to its process group after STOP_TIMEOUT_S, then SIGKILL
        to any descendant seen during the run that outlived it (matched by pid and start time)."""
        self.remember()
        t = time.perf_counter()
        forced = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                forced = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)   # its own session: start_new_session
                except ProcessLookupError:
                    pass
                self.proc.wait()
        leftovers = []
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    leftovers.append(f"{pid} {' '.join(p.cmdline())[:100]}")
                    p.kill()
            except psutil.Error:
                pass
        for s in self.stores:
            s.stop()
        return {"stop_s": round(time.perf_counter() - t, 1), "forced": forced, "leftovers_killed": leftovers}


def start_target(name: str, work: Path, extra_env: dict[str, str] | None = None) -> Running:
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / f"{name}.log"
    log = open(log_path, "ab")
    port = free_listen_port()
    env = dict(os.environ)
    stores: list[EmbeddedServer] = []
    try:
        if name == "raychat":
            from raychat.config import Settings
            # As `raychat up` starts them: on disk, fsync per commit when writes ask for the journal.
            stores.append(start_mongo(work / "mongo", log_path=work / "mongo.log",
                                      sync_on_commit=Settings().write_journal))
            stores.append(start_redis(work / "redis", log_path=work / "redis.log"))
            db = f"bench_compare_{os.getpid()}"
            env.update(RAYCHAT_LIMITS, **RAYCHAT_PROCESSES, RAYCHAT_MONGODB_URI=stores[0].uri, RAYCHAT_REDIS_URL=stores[1].uri,
                       RAYCHAT_MONGODB_DB=db, RAYCHAT_JWT_SECRET=JWT_SECRET, RAYCHAT_DATA_DIR=str(work / "data"),
                       RAYCHAT_HOST="127.0.0.1", RAYCHAT_PORT=str(port),
                       RAYCHAT_NAMESPACE=f"raychat-compare-{os.getpid()}", RAYCHAT_LOG_LEVEL="WARNING")
            env.update(extra_env or {})
            cmd = [str(Path(sys.executable).parent / "raychat"), "up"]
            url = f"http://127.0.0.1:{port}"
            load_args = ["--mongodb-uri", stores[0].uri, "--mongodb-db", db, "--jwt-secret", JWT_SECRET]
        else:
            load_args = []
            url = f"ws://127.0.0.1:{port}"
            if name == "websockets":
                cmd = [sys.executable, "-m", "bench.peers.websockets_server", "--port", str(port)]
            else:
                stores.append(start_redis(work / "redis", log_path=work / "redis.log"))
                env["BENCH_REDIS_URL"] = stores[0].uri
                cmd = [sys.executable, "-m", "uvicorn", f"bench.peers.{name}_server:app", "--host", "127.0.0.1",
                       "--port", str(port), "--workers", "2", "--log-level", "warning"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except BaseException:
        for s in stores:
            s.stop()
        raise
    finally:
        log.close()
    return Running(name, url, proc, stores, load_args, log_path)


async def _probe(running: Running) -> None:
    """One socket through the whole path: for raychat, /readyz and then a real user's hello."""
    if running.name == "raychat":
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(running.url + "/readyz")
            r.raise_for_status()
        return
    wire = make_wire(running.name, running.url, "probe")
    ws = await wire.open(Member(0, "probe", "", ["probe"]))
    await ws.close()


def wait_ready(running: Running) -> float:
    t = time.perf_counter()
    last: BaseException | None = None
    while time.perf_counter() - t < READY_TIMEOUT_S:
        if running.proc.poll() is not None:
            raise RuntimeError(f"{running.name} exited with {running.proc.returncode}; see {running.log_path}")
        try:
            asyncio.run(_probe(running))
            return time.perf_counter() - t
        except Exception as exc:      # not up yet: connection refused, 503, handshake failed
            last = exc
        running.remember()
        time.sleep(1.0)
    raise RuntimeError(f"{running.name} not ready after {READY_TIMEOUT_S:.0f} s: {last!r}; see {running.log_path}")


def run_scenario(running: Running, scenario: str, work: Path, quick: bool,
                 extra: list[str] | None = None) -> dict[str, Any]:
    out = work / f"{running.name}-{scenario}.json"
    cmd = [sys.executable, "-m", "bench.load", "--target", running.name, "--url", running.url,
           "--scenario", scenario, "--json-out", str(out), *running.load_args]
    for pid in running.pids:
        cmd += ["--server-pid", str(pid)]
    if quick:
        cmd.append("--quick")
    cmd += extra or []
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL)
    while proc.poll() is None:
        running.remember()
        if time.perf_counter() - t > SCENARIO_TIMEOUT_S:
            proc.kill()
            proc.wait()
            return {"error": f"timed out after {SCENARIO_TIMEOUT_S:.0f} s"}
        time.sleep(1.0)
    if proc.returncode != 0 or not out.exists():
        return {"error": f"bench.load exited with {proc.returncode}"}
    report = json.loads(out.read_text())
    return report["scenarios"][scenario] | {"loadavg_start": report["loadavg_start"],
                                           "loadavg_end": report["loadavg_end"]}


# ---- the table -------------------------------------------------------------------------------------

def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    return "–" if v is None or v == "n/a" else fmt.format(v)


def _rss(r: dict[str, Any]) -> str:
    return _f((r.get("server_rss") or {}).get("max_mb"), "{:,.0f} MB")


def _lossdup(r: dict[str, Any]) -> str:
    steps = r.get("steps") or []
    return f"{sum(s['lost'] for s in steps)} / {sum(s['duplicates'] for s in steps)}"


def scenario_row(target: str, scenario: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {scenario} | {target} | error: {r['error']} | | | | | |"
    if scenario == "idle10k":
        hb = r.get("heartbeat", {})
        per = r.get("server_rss_bytes_per_socket")
        return (f"| {scenario} | {target} | {r.get('accepted', 0):,} of {r['sockets_requested']:,} opened "
                f"({r['connect']['seconds']:.0f} s); {hb.get('answered', 0):,} answered a ping after "
                f"{r['hold_s']:.0f} s | | | {_f(per, '{:,.0f} B/socket')} | {_rss(r)} | |")
    if scenario == "storm":
        s = r["storm"]
        step = r["steps"][0]
        return (f"| {scenario} | {target} | {step['deliveries_per_s']:,.0f} (offered "
                f"{step['offered_deliveries_per_s']:,.0f}); {s['sockets_cut']} cut, reconnect p99 "
                f"{_f(s['reconnect_ms'].get('p99'), '{:,.0f} ms')} | {_f(step['delivery_ms'].get('p50'), '{:.0f}')} / "
                f"{_f(step['delivery_ms'].get('p99'), '{:.0f}')} | {_f(step['ack_ms']['p50'], '{:.0f}') if isinstance(step['ack_ms'], dict) else 'n/a'} "
                f"| lost {s['lost_on_cut_sockets']} on cut + {s['lost_on_other_sockets']} on others / dup "
                f"{s['duplicates']}; {s['redelivered_after_reconnect']} redelivered after reconnect | {_rss(r)} | "
                f"{step['server_cores']:.2f} / {step['client_cores']:.2f} |")
    best = r.get("best")
    tried = ", ".join(f"{s['offered_deliveries_per_s']:,.0f}{'✓' if s['passed'] else '✗'}" for s in r["steps"])
    if best is None:
        worst = min(r["steps"], key=lambda s: s["offered_deliveries_per_s"])
        d = worst["delivery_ms"]
        return (f"| {scenario} | {target} | **0** (none held; at {worst['offered_deliveries_per_s']:,.0f} offered: "
                f"p99 {_f(d.get('p99'), '{:,.0f}')} ms) [{tried}] | {_f(d.get('p50'), '{:.0f}')} / "
                f"{_f(d.get('p99'), '{:.0f}')} | – | {_lossdup(r)} | {_rss(r)} | "
                f"{worst['server_cores']:.2f} / {worst['client_cores']:.2f} |")
    return (f"| {scenario} | {target} | **{best['deliveries_per_s']:,.0f}** [{tried}] | "
            f"{best['delivery_p50_ms']:.0f} / {best['delivery_p99_ms']:.0f} | {_f(best['ack_p50_ms'], '{:.0f}')} | "
            f"{_lossdup(r)} | {_rss(r)} | {best['server_cores']:.2f} / {best['client_cores']:.2f} |")


def table(results: dict[str, Any]) -> str:
    rows = ["| scenario | target | deliveries/s at p99 ≤ 100 ms [offered rates tried: ✓ held, ✗ missed] | "
            "delivery p50 / p99 ms | ack p50 ms | lost / dup (all steps) | server RSS max | "
            "cores: server / client |",
            "|---|---|---|---|---|---|---|---|"]
    targets = results["targets"]
    for scenario in results["scenarios"]:
        for target in targets:
            r = targets[target].get("scenarios", {}).get(scenario)
            if r is not None:
                rows.append(scenario_row(target, scenario, r))
    return "\n".join(rows)


def headline(results: dict[str, Any]) -> tuple[dict[str, Any], str]:
    targets = results["targets"]
    peers = [t for t in targets if t != "raychat"]
    ratios: dict[str, Any] = {}
    rows = ["| scenario | " + " | ".join(f"{t} deliveries/s" for t in targets) + " | " +
            " | ".join(f"raychat / {p}" for p in peers) + " |",
            "|---|" + "---|" * (len(targets) + len(peers))]
    for scenario in results["scenarios"]:
        if scenario in ("storm", "idle10k"):
            continue
        best = {}
        for t in targets:
            r = targets[t].get("scenarios", {}).get(scenario) or {}
            best[t] = (r.get("best") or {}).get("deliveries_per_s", 0.0) if "error" not in r else None
        ratio = {p: (None if not best.get(p) or best.get("raychat") is None else round(best["raychat"] / best[p], 3))
                 for p in peers}
        ratios[scenario] = {"deliveries_per_s": best, "raychat_over": ratio}
        rows.append(f"| {scenario} | " + " | ".join(_f(best[t]) for t in targets) + " | " +
                    " | ".join(_f(ratio[p], "{:.2f}×") for p in peers) + " |")
    return ratios, "\n".join(rows)


def wait_quiet(below: float, at_most_s: float) -> float:
    """Other jobs on a shared machine move every latency: wait (polling every 30 s) until the
    1-minute load average is under ``below``, or ``at_most_s`` has passed. Returns the wait."""
    t = time.perf_counter()
    while os.getloadavg()[0] >= below and time.perf_counter() - t < at_most_s:
        print(f"load average {os.getloadavg()[0]:.2f} >= {below}: waiting", flush=True)
        time.sleep(30)
    return time.perf_counter() - t


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: short steps, short ladders, 1,000 idle sockets")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results-compare.json")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir (servers' logs, per-scenario JSON)")
    p.add_argument("--raychat-env", action="append", default=[], metavar="NAME=VALUE",
                   help="a diagnostic: an extra environment variable for raychat up (e.g. RAY_worker_niceness=0)")
    p.add_argument("--load-arg", action="append", default=[], metavar="FLAG",
                   help="a diagnostic: an extra flag for every bench.load run (e.g. --no-compression)")
    p.add_argument("--quiet-load", type=float, default=0.0,
                   help="first wait until the 1-minute load average is below this (0: start at once)")
    p.add_argument("--quiet-wait", type=float, default=3600.0, help="...but at most this many seconds")
    args = p.parse_args(argv)
    args.target_list = [t for t in args.targets.split(",") if t]
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    for t in args.target_list:
        if t not in TARGETS:
            p.error(f"unknown target {t!r}")
    for s in args.scenario_list:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    from .run import machine

    args = parse_args(argv)
    waited = wait_quiet(args.quiet_load, args.quiet_wait) if args.quiet_load else 0.0
    work = Path(tempfile.mkdtemp(prefix="raychat-compare-"))
    t0 = time.perf_counter()
    results: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "command": " ".join(["python", "-m", "bench.compare", *(argv or sys.argv[1:])]),
                               "machine": machine(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                               "waited_for_quiet_s": round(waited), "raychat_env": args.raychat_env,
                               "load_args": args.load_arg, "quick": args.quick,
                               "scenarios": args.scenario_list, "targets": {}}
    try:
        for name in args.target_list:
            print(f"== {name}", flush=True)
            entry: dict[str, Any] = {"loadavg_start": [round(x, 2) for x in os.getloadavg()], "scenarios": {}}
            results["targets"][name] = entry
            running = start_target(name, work / name, dict(e.split("=", 1) for e in args.raychat_env))
            try:
                entry["startup_s"] = round(wait_ready(running), 1)
                for scenario in args.scenario_list:
                    print(f"   {name} {scenario}", flush=True)
                    entry["scenarios"][scenario] = run_scenario(running, scenario, work / name, args.quick,
                                                                args.load_arg)
            except Exception as exc:
                entry["error"] = repr(exc)
                print(f"   {name} failed: {exc!r}", flush=True)
            finally:
                entry["stop"] = running.stop()
    finally:
        if args.keep_work:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["headline"], head_md = headline(results)
    md = table(results)
    results["table_markdown"] = md
    results["headline_markdown"] = head_md
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    print(f"\n{m['nproc']} cores ({m['cpu']}), {m['mem_gib']} GiB, Python {m['python']}, Ray {m['ray']}; "
          f"load average at start {results['loadavg_start'][0]:.2f}, at end {results['loadavg_end'][0]:.2f}, "
          f"wall {results['wall_s']:.0f} s\n")
    print(head_md)
    print()
    print(md)
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
