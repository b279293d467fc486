"""Memory and CPU of a server's process tree, read with psutil.

A server here is one or more root pids (the target's process, plus the embedded stores it
uses); its tree is the roots and all their descendants at the moment of the reading, so Ray's
raylet, GCS and workers, or uvicorn's worker processes, are counted. RSS is summed over the
tree: pages shared between processes (libraries, copy-on-write) count once per process, so it
is an upper bound, the same one for every target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil


def tree(roots: list[int]) -> list[psutil.Process]:
    """The live processes of the roots' trees (a root that is gone is skipped)."""
    out: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            out.setdefault(p.pid, p)
    return list(out.values())


def rss_bytes(roots: list[int]) -> tuple[int, int]:
    """(summed RSS, number of processes) of the roots' trees."""
    total = n = 0
    for p in tree(roots):
        try:
            total += p.memory_info().rss
            n += 1
        except psutil.Error:
            pass
    return total, n


def cpu_seconds(roots: list[int]) -> dict[int, float]:
    """{pid: user + system CPU seconds} over the trees (children already reaped are not counted)."""
    out: dict[int, float] = {}
    for p in tree(roots):
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


@dataclass
class CpuMeter:
    """Cores used by the trees between start() and stop(), and by this process (the clients)."""
    roots: list[int]
    _t: float = 0.0
    _server: dict[int, float] = field(default_factory=dict)
    _client: float = 0.0

    def start(self) -> "CpuMeter":
        self._t, self._server, self._client = time.monotonic(), cpu_seconds(self.roots), time.process_time()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(1e-6, time.monotonic() - self._t)
        after = cpu_seconds(self.roots)
        server = sum(v - self._server.get(pid, 0.0) for pid, v in after.items())
        return {"server_cores": round(server / wall, 2),
                "client_cores": round((time.process_time() - self._client) / wall, 2),
                "machine_load_1m": round(psutil.getloadavg()[0], 2)}
