"""What one hop between two processes costs: ``python -m bench.ray_hops [--n N]``.

A message of raychat crosses processes as Ray actor calls (gateway → host, host → peer host) and
as items of a streaming generator (host → each gateway replica's ``stream``). This measures, on
this machine, the CPU each of those costs both sides of the hop, and what the same payload costs
over a plain asyncio TCP connection between the same two actors (length-prefixed pickle), the
cheapest data plane a rework could put beside Ray's.

Each hop carries what raychat's does for one group10 message: a ``call_many`` item with a send
(body, client_msg_id, attachments) one way and its answer back; a fan-out batch of one item
(10 socket ids, a 300-byte frame) on the stream. Measured: the CPU time of the two actor
processes (``/proc/<pid>/stat``) and of the rest of the machine (``/proc/stat`` minus both:
raylet, GCS, and whatever else runs), per hop, at 1 and at 8 hops in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import struct
import time

import psutil
import ray

from bench.cpu import _busy_ticks, _TICK

SEND = ("send", {"conversation_id": "c" * 22, "client_msg_id": "m" * 26, "body": "x" * 120,
                 "attachments": [], "user_id": "u" * 22, "socket_id": "s" * 16})
FANOUT = [(tuple(f"socket-{i:02d}" for i in range(10)), "c" * 22, 1, "{" + "x" * 298 + "}", None)]


@ray.remote(num_cpus=0)
class Callee:
    def __init__(self):
        self.server = None

    def pid(self) -> int:
        return os.getpid()

    async def call_many(self, kind: str, ident: str, items: list) -> list:
        return [{"ok": {"seq": 1, "created_at": 0.0}} for _ in items]

    async def stream(self, n: int):
        for _ in range(n):
            yield FANOUT

    async def listen(self) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    size, = struct.unpack("!I", await reader.readexactly(4))
                    rid, kind, ident, items = pickle.loads(await reader.readexactly(size))
                    body = pickle.dumps((rid, [{"ok": {"seq": 1, "created_at": 0.0}} for _ in items]))
                    writer.write(struct.pack("!I", len(body)) + body)
            except asyncio.IncompleteReadError:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


@ray.remote(num_cpus=0)
class Caller:
    def __init__(self, callee):
        self.callee = callee

    def pid(self) -> int:
        return os.getpid()

    async def calls(self, n: int, in_flight: int) -> float:
        sem = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with sem:
                await self.callee.call_many.remote("conv", "c" * 22, [SEND])

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0

    async def stream(self, n: int) -> float:
        t0 = time.perf_counter()
        got = 0
        async for ref in self.callee.stream.remote(n):
            await ref
            got += 1
        assert got == n
        return time.perf_counter() - t0

    async def tcp(self, port: int, n: int, in_flight: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        waiting: dict[int, asyncio.Future] = {}

        async def read_answers() -> None:
            while True:
                size, = struct.unpack("!I", await reader.readexactly(4))
                rid, _ = pickle.loads(await reader.readexactly(size))
                waiting.pop(rid).set_result(None)

        reading = asyncio.get_running_loop().create_task(read_answers())
        sem = asyncio.Semaphore(in_flight)

        async def one(rid: int) -> None:
            async with sem:
                fut = waiting[rid] = asyncio.get_running_loop().create_future()
                body = pickle.dumps((rid, "conv", "c" * 22, [SEND]))
                writer.write(struct.pack("!I", len(body)) + body)
                await fut

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        reading.cancel()
        writer.close()
        return wall


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def measure(procs: list[psutil.Process], n: int, run) -> dict:
    own0, busy0 = [_cpu(p) for p in procs], _busy_ticks()
    wall = run()
    own1, busy1 = [_cpu(p) for p in procs], _busy_ticks()
    own = [b - a for a, b in zip(own0, own1)]
    rest = max(0.0, (busy1 - busy0) / _TICK - sum(own))
    return {"hops_per_s": round(n / wall), "caller_us": round(own[1] / n * 1e6),
            "callee_us": round(own[0] / n * 1e6), "rest_of_machine_us": round(rest / n * 1e6),
            "both_sides_us": round(sum(own) / n * 1e6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="hops per measurement")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        callee = Callee.remote()
        caller = Caller.remote(callee)
        procs = [psutil.Process(ray.get(callee.pid.remote())), psutil.Process(ray.get(caller.pid.remote()))]
        port = ray.get(callee.listen.remote())
        ray.get([caller.calls.remote(300, 8), caller.stream.remote(300), caller.tcp.remote(port, 300, 8)])  # warm-up
        n = args.n
        results = {
            "ray call, 1 in flight": measure(procs, n, lambda: ray.get(caller.calls.remote(n, 1))),
            "ray call, 8 in flight": measure(procs, n, lambda: ray.get(caller.calls.remote(n, 8))),
            "ray stream item": measure(procs, n, lambda: ray.get(caller.stream.remote(n))),
            "tcp call, 1 in flight": measure(procs, n, lambda: ray.get(caller.tcp.remote(port, n, 1))),
            "tcp call, 8 in flight": measure(procs, n, lambda: ray.get(caller.tcp.remote(port, n, 8))),
        }
    finally:
        ray.shutdown()
    print("| hop | hops/s | caller µs | callee µs | both sides µs | rest of machine µs |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['hops_per_s']:,} | {r['caller_us']} | {r['callee_us']} | {r['both_sides_us']} "
              f"| {r['rest_of_machine_us']} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": n, "ray": ray.__version__, "nproc": os.cpu_count(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
