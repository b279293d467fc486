"""Where raychat's time goes under one load: ``python -m bench.profile --scenario group10 --rate 500``.

Starts raychat as bench/compare.py does, runs one step of bench/load.py at the given offered
rate (deliveries/s), and meanwhile samples each of raychat's busy processes with py-spy
(``py-spy record --format raw``, the ``bench`` extra): the Serve proxy, the gateway replica, the
actor hosts, the push worker, SecantusDB. Prints, per process, the cores it used and the share of
its busy samples under each of the functions that take most (inclusive), and writes the raw
collapsed stacks (for a flame graph: ``flamegraph.pl`` or speedscope) to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from .compare import REPO, start_target, wait_ready
from .cpu import _name
from .procs import cpu_seconds

# Which processes, by a piece of their command line.
ROLES = {"proxy": "ProxyActor", "gateway": "ServeReplica:raychat:Gateway", "host": "ActorHost",
         "push": "PushWorker", "store": "secantusd", "driver": "raychat up"}


def processes(root: int) -> dict[str, list[psutil.Process]]:
    out: dict[str, list[psutil.Process]] = {}
    for p in [psutil.Process(root), *psutil.Process(root).children(recursive=True)]:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        for role, needle in ROLES.items():
            if needle in cmd:
                out.setdefault(role, []).append(p)
                break
    return out


# Where a sample's innermost Python frame is, by file: the first match names its area.
AREAS = (("ray/serve/", "Ray Serve"), ("ray/", "Ray core (actor calls, serialization, metrics)"),
         ("uvicorn/", "uvicorn"), ("websockets/", "websockets"), ("starlette/", "Starlette/FastAPI"),
         ("fastapi/", "Starlette/FastAPI"), ("pymongo/", "pymongo"), ("bson/", "pymongo"), ("redis/", "redis-py"),
         ("json/", "json"), ("asyncio/", "asyncio"), ("concurrent/", "threads"), ("threading", "threads"),
         ("actors/", "raychat actors"), ("gateway/", "raychat gateway"), ("storage/", "raychat storage"),
         ("push/", "raychat push"), ("raychat/", "raychat"), ("secantus", "SecantusDB"), ("wiredtiger", "SecantusDB"))


def area(frame: str) -> str:
    path = frame.rpartition("(")[2]
    for needle, name in AREAS:
        if needle in path:
            return name
    return "other" if path else "native / unknown"


def summarize(raw: Path, top: int) -> dict:
    """Shares of the samples (py-spy ``--gil``: the thread held the GIL, so Python was running):
    inclusive per function (each function once per stack), and by area of the innermost frame."""
    total = 0
    incl: Counter = Counter()
    areas: Counter = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" if " (" in f else f
                  for f in stack.split(";")]
        for f in set(frames):
            incl[f] += k
        areas[area(frames[-1])] += k
    pct = lambda c, n: [(f, round(100 * v / total, 1)) for f, v in c.most_common(n)] if total else []  # noqa: E731
    return {"samples": total, "by_area_pct": pct(areas, 20), "inclusive_pct": pct(incl, top)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="group10")
    p.add_argument("--rate", type=float, default=500.0, help="offered deliveries/s")
    p.add_argument("--duration", type=float, default=15.0, help="seconds sampled")
    p.add_argument("--sample-rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where the raw stacks and the summary go (default: a new temp dir, printed)")
    args = p.parse_args(argv)
    if args.out_dir is None:
        args.out_dir = Path(tempfile.mkdtemp(prefix="raychat-profile-out-"))
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work = Path(tempfile.mkdtemp(prefix="raychat-profile-"))
    running = start_target("raychat", work / "raychat")
    result: dict = {"scenario": args.scenario, "offered_deliveries_per_s": args.rate, "duration_s": args.duration,
                    "loadavg_start": psutil.getloadavg()}
    try:
        wait_ready(running)
        load_json = work / "load.json"
        load = subprocess.Popen([sys.executable, "-m", "bench.load", "--target", "raychat", "--url", running.url,
                                 "--scenario", args.scenario, "--rates", str(args.rate), "--warmup", "2",
                                 "--window", str(args.duration + 20), "--json-out", str(load_json),
                                 *running.load_args, *sum((["--server-pid", str(x)] for x in running.pids), [])],
                                cwd=REPO)
        # Wait for the load's sockets and warm-up: its first log line comes after the step.
        time.sleep(15)
        procs = processes(running.proc.pid) | {"store": [psutil.Process(running.stores[0].pid)]}
        args.out_dir.mkdir(parents=True, exist_ok=True)
        spies = []
        cpu0 = {}
        for role, plist in procs.items():
            for i, proc in enumerate(plist):
                name = f"{args.scenario}-{role}{i if len(plist) > 1 else ''}"
                out = args.out_dir / f"{name}.txt"
                cpu0[name] = (proc, sum(proc.cpu_times()[:2]))
                spies.append((name, out, subprocess.Popen(
                    [py_spy, "record", "--pid", str(proc.pid), "--rate", str(args.sample_rate), "--duration",
                     str(int(args.duration)), "--format", "raw", "--gil", "--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        roots = running.pids
        t0, tree0 = time.monotonic(), cpu_seconds(roots)
        for _, _, spy in spies:
            spy.wait()
        wall = time.monotonic() - t0
        # Every process of the tree, by name, not only the sampled ones: HAProxy, Redis, the raylet
        # and GCS take their share too, and the sampled ones alone do not add up to server_cores.
        by_name: Counter = Counter()
        for pid, secs in cpu_seconds(roots).items():
            by_name[_name(pid)] += (secs - tree0.get(pid, secs)) / wall
        result["tree_cores_by_name"] = {k: round(v, 3) for k, v in by_name.most_common() if v >= 0.005}
        result["processes"] = {}
        for name, out, _ in spies:
            proc, c0 = cpu0[name]
            try:
                cores = round((sum(proc.cpu_times()[:2]) - c0) / wall, 2)
            except psutil.Error:
                cores = None
            result["processes"][name] = {"cores": cores, **(summarize(out, args.top) if out.exists() else {})}
        load.wait()
        if load_json.exists():
            step = json.loads(load_json.read_text())["scenarios"][args.scenario]["steps"][0]
            result["load_step"] = {k: step[k] for k in ("offered_deliveries_per_s", "deliveries_per_s", "delivery_ms",
                                                        "ack_ms", "lost", "server_cores", "client_cores")}
    finally:
        running.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_end"] = psutil.getloadavg()
    (args.out_dir / f"{args.scenario}-summary.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result.get("processes", {}).items():
        print(f"\n## {name}: {r.get('cores')} cores, {r.get('samples', 0)} samples holding the GIL")
        print("  by area: " + ", ".join(f"{a} {v}%" for a, v in r.get("by_area_pct", [])))
        for f, v in r.get("inclusive_pct", [])[:args.top]:
            print(f"  {v:5.1f}%  {f}")
    print("\n## cores by process name, whole tree: " + ", ".join(
        f"{k} {v}" for k, v in result.get("tree_cores_by_name", {}).items()))
    print(json.dumps(result.get("load_step"), indent=1))
    print(f"\nraw stacks and summary: {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
