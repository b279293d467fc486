"""Who used the CPU during a measurement: this benchmark's process tree versus everything else.

The machine may be shared; a latency figure means little without knowing how many of the
two cores other processes took meanwhile.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def _name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    if pid == os.getpid():
        return "benchmark driver (the clients)"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    for w in words[:3]:
        base = os.path.basename(w)
        if base in ("secantusd-py", "redis-server", "raylet", "gcs_server") or base.startswith("redis-server"):
            return base.split(" ")[0]
    if words[0].startswith("ray::"):
        # "ray::ProxyActor.receive_asgi_messages" -> "ray::ProxyActor": the method changes by the moment
        return words[0].split(".")[0].split(" ")[0]
    return os.path.basename(words[-1]) if words[0].endswith("python") or "python" in words[0] else \
        os.path.basename(words[0])


def _tree(root: int) -> dict[int, int]:
    """{pid: utime + stime ticks} for root and all its descendants."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()   # the command name may hold spaces
        pid, ppid = int(entry.name), int(rest[1])
        children.setdefault(ppid, []).append(pid)
        ticks[pid] = int(rest[11]) + int(rest[12])    # utime + stime, all threads
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        out[pid] = ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return out


class CpuWindow:
    """Cores used by the whole machine and by our process tree between start() and stop()."""

    def start(self) -> "CpuWindow":
        self._t, self._busy, self._tree = time.monotonic(), _busy_ticks(), _tree(os.getpid())
        return self

    def stop(self) -> dict[str, object]:
        wall = time.monotonic() - self._t
        busy = (_busy_ticks() - self._busy) / _TICK / wall
        after = _tree(os.getpid())
        by_name: dict[str, float] = {}
        for pid, ticks in after.items():
            used = (ticks - self._tree.get(pid, 0)) / _TICK / wall
            if used > 0:
                name = _name(pid)
                by_name[name] = by_name.get(name, 0.0) + used
        ours = sum(by_name.values())
        return {"machine_busy_cores": round(busy, 2), "benchmark_tree_cores": round(ours, 2),
                "other_processes_cores": round(max(0.0, busy - ours), 2),
                "by_process_cores": {k: round(v, 3) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])
                                     if v >= 0.005}}
