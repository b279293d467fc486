"""redis-server restarts while clients chat: chat carries on through it (rate limits fail open,
presence is best effort), and after it nothing acknowledged is lost or duplicated.

On the ``faulty`` app (tests/fixtures_faults.py): its gateway and hosts use a redis-server
this test may stop; it comes back on the same port, empty (no persistence, as configured).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.harness import Scale, Target, run_fault

pytestmark = pytest.mark.e2e

OUTAGE_S = 5.0


async def test_a_redis_restart_loses_and_duplicates_nothing(faulty, scale):
    async def restart_redis(h):
        h.began()
        await asyncio.to_thread(faulty.stop_redis)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await asyncio.to_thread(faulty.start_redis)
        h.cleared()

    report = await run_fault(Target(faulty.base_url), scale, "redis-restart", restart_redis)
    assert report.ok, report.explain()
    # Rate limits fail open and presence is best effort: chat does not wait for Redis.
    assert all(c.acks_during > 0 for c in report.cycles), "no send was acked while Redis was down"


async def test_connected_users_show_online_again_after_a_redis_restart(faulty):
    """Presence lives in Redis without persistence: a restart forgets every online mark. The
    hosts' heartbeat must put back the marks of the sessions they hold, or every connected user
    shows offline until they reconnect."""
    async def restart_redis(h):
        h.began()
        await asyncio.to_thread(faulty.stop_redis)
        await asyncio.to_thread(faulty.start_redis)
        h.cleared()

    async def presence(h, report):
        ids = [c.client.user_id for c in h.clients]
        deadline = asyncio.get_running_loop().time() + 3 * faulty.settings.presence_ttl_s
        while True:
            shown = await h.clients[0].client.presence(ids)
            offline = [u for u in ids if shown[u]["status"] != "online"]
            if not offline or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert not offline, f"{len(offline)} of {len(ids)} connected users show offline after the restart"

    report = await run_fault(Target(faulty.base_url), Scale(), "redis-restart-presence",
                             restart_redis, after=presence)
    assert report.ok, report.explain()
