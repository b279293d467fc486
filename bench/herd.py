"""What a mass disconnect does to the sends of everyone else: ``python -m bench.herd [--out F]``.

Starts raychat as ``bench.compare`` does (``raychat up``, SecantusDB on disk, two gateway
replicas). One user posts to a conversation of their own over HTTP every 20 ms (201 = durable)
while ``bench.load`` runs group1000 for one step at 2,000 deliveries/s and closes its 1,000
sockets. Two seconds later (the presence grace) those 1,000 sessions go offline together, and
each asks the store who to tell. The report gives the store's CPU for each second after the
sockets closed and the latency of the sends that overlapped the herd.

Found by the reconnect-storm scenario (``bench.compare``), which missed at p99 1.2-1.6 s only
when it began within seconds of group1000's end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.compare import REPO, start_target, wait_ready

SEND_EVERY_S = 0.02
WATCH_S = 12


async def _sender(url: str, state: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        name = "herd" + uuid.uuid4().hex[:10]
        (await http.post("/v1/auth/register", json={"username": name, "password": "password123"})).raise_for_status()
        login = await http.post("/v1/auth/login", json={"username": name, "password": "password123"})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        conv = await http.post("/v1/conversations", json={"kind": "group", "title": "herd", "members": []}, headers=auth)
        cid = conv.json()["conversation_id"]
        state["ready"].set()
        await state["go"].wait()
        end, i = time.perf_counter() + WATCH_S, 0
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = await http.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": f"m{i}", "body": "x"},
                                headers=auth)
            state["sends"].append((t - state["t0"], (time.perf_counter() - t) * 1000, r.status_code))
            i += 1
            await asyncio.sleep(max(0.0, SEND_EVERY_S - (time.perf_counter() - t)))


async def _run(url: str, load_args: list[str], store: psutil.Process, work: Path) -> dict[str, Any]:
    state: dict[str, Any] = {"ready": asyncio.Event(), "go": asyncio.Event(), "sends": []}
    sender = asyncio.create_task(_sender(url, state))
    await state["ready"].wait()
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load", "--target", "raychat", "--url", url, "--scenario", "group1000",
        "--rates", "2000", "--json-out", str(work / "group1000.json"), *load_args, cwd=REPO)
    if await load.wait() != 0:
        raise RuntimeError("bench.load failed")
    state["t0"] = time.perf_counter()
    state["go"].set()
    cpu, before = [], sum(store.cpu_times()[:2])
    for _ in range(WATCH_S):
        await asyncio.sleep(1.0)
        now = sum(store.cpu_times()[:2])
        cpu.append(round(now - before, 2))
        before = now
    await sender
    sends = state["sends"]
    ms = sorted(m for _, m, _ in sends)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 1)   # noqa: E731
    codes: dict[str, int] = {}
    for _, _, code in sends:
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {"store_cpu_s_each_second": cpu, "store_cpu_s": round(sum(cpu), 2), "sends": len(sends), "codes": codes,
            "send_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": round(ms[-1], 1)},
            "slowest": [{"at_s": round(t, 2), "ms": round(m, 1)} for t, m, _ in sorted(sends, key=lambda s: -s[1])[:5]]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the report here as JSON")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="raychat-herd-"))
    running = start_target("raychat", work)
    try:
        wait_ready(running)
        store = psutil.Process(running.stores[0].pid)
        report = asyncio.run(_run(running.url, running.load_args, store, work))
    finally:
        running.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
