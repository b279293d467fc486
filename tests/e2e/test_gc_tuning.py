"""A host started by the directory takes its start-up objects out of garbage collection
(raychat/gc_tuning.py): a full collection then walks its sessions and actors, not Ray's and
pymongo's ~100,000 objects, and stalls every conversation it holds for far less."""

from __future__ import annotations

import pytest
import ray

from actors.directory import current_view

pytestmark = pytest.mark.e2e


async def test_every_host_has_frozen_its_start_up_objects(raychat):
    names = current_view(raychat.settings.namespace).hosts
    assert names
    for name in names:
        stats = await ray.get_actor(name, namespace=raychat.settings.namespace).stats.remote()
        # Measured ~108,000 in a host; anything near zero means the freeze did not happen.
        assert stats["gc_frozen"] > 20_000, stats
