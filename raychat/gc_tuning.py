"""Full garbage collections that skip what a host built at start-up.

Why: a host holds ~110,000 objects the collector tracks before it serves a single message (Ray,
pymongo, redis-py, their modules and caches), and they live as long as the process. CPython's
full collection walks every one of them, and meanwhile the host answers nothing, for every
conversation and session it holds: measured under ``bench.load`` (group10), one full collection
took 114 ms in a host, enough on its own to put a step's p99 over 100 ms. ``gc.freeze()`` moves
everything alive at that moment into a permanent generation the collector never walks, so a full
collection then covers only what came after (sessions, actors, buffers): ~10,000–25,000 objects,
13–64 ms, under the same load. CPython documents the call for this; it frees nothing and changes
no semantics (cycles among the frozen objects would only wait for the process to end, and
start-up makes none that matter). Gateway replicas need nothing of ours: Serve does the same at
the end of a replica's start (``RAY_SERVE_FREEZE_GC_ON_STARTUP``, on by default); hosts are plain
Ray actors, which nothing freezes.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect start-up's garbage, then take what is left out of every later collection."""
    gc.collect()       # start-up's garbage is freed now, not frozen for good
    gc.freeze()
