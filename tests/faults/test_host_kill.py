"""Kill the ActorHost that owns a conversation while every member sends and retries.

On the session app (two hosts). Ray restarts the killed host (``max_restarts=-1``); its
virtual actors reactivate from the store on their next message. Pass (tests/faults/harness.py):
every acknowledged event stored exactly once at its acked seq, the store's seqs gap-free,
every client's sequence equal to the store's, the first ack within 10 s of the kill.
In soak mode the kill repeats, each time on the owner of the next conversation.
"""

from __future__ import annotations

import asyncio

import pytest
import ray

from actors.directory import current_view
from actors.placement import owner
from tests.faults.harness import Target, run_fault

pytestmark = pytest.mark.e2e


async def test_killing_the_conversation_host_mid_traffic_loses_and_duplicates_nothing(raychat, scale):
    namespace = raychat.settings.namespace
    killed: list[str] = []

    async def kill_owner(h):
        cid = h.cids[len(killed) % len(h.cids)]
        view = await asyncio.to_thread(current_view, namespace)
        name = owner(("conv", cid), view.hosts)
        host = await asyncio.to_thread(ray.get_actor, name, namespace)
        h.began()
        ray.kill(host, no_restart=False)
        # The fault is the kill itself; the restart is part of the recovery the bound measures.
        h.cleared()
        killed.append(name)

    report = await run_fault(Target(raychat.base_url), scale, "host-kill", kill_owner)
    assert report.ok, report.explain()
    assert report.acked > 0 and killed
