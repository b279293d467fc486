"""Full garbage collections that skip what a process built at start-up.

Why: a host or gateway replica holds 40,000–115,000 objects the collector tracks before it
serves a single message (Ray, FastAPI, pymongo, their modules and caches), and they live as
long as the process. CPython's full collection walks every one of them, and meanwhile that
process answers nothing: measured under ``bench.load`` (group10 and group1000), one full
collection took 114–126 ms in a host or replica, enough on its own to put a step's p99 over
100 ms. ``gc.freeze()`` moves everything alive at that moment into a permanent generation the
collector never walks, so a full collection then covers only what came after (sessions,
actors, sockets). CPython documents the call for this (pre-fork servers); it frees nothing and
changes no semantics: cycles among the frozen objects would only wait for the process to end,
and start-up makes none that matter.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect start-up's garbage, then take what is left out of every later collection."""
    gc.collect()       # start-up's garbage is freed now, not frozen for good
    gc.freeze()
