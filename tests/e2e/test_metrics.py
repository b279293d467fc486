"""GET /metrics through Serve: after a send and its delivery over WebSockets, the exposition
parses with prometheus_client's own parser and shows every family the issue asks for, with
values that follow from what the test did; the Grafana dashboard reads only names it exposes."""

from __future__ import annotations

import asyncio
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raychat import metrics as m
from tests.chat_client import Socket, create_group, register
from tests.test_metrics import dashboard_metric_names

pytestmark = pytest.mark.e2e


class Scrape:
    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def total(self, sample: str, **labels: str) -> float:
        return sum(s.value for f in self.families.values() for s in f.samples
                   if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))

    def labels(self, sample: str, key: str) -> set[str]:
        return {s.labels.get(key) for f in self.families.values() for s in f.samples if s.name == sample}

    def declared(self) -> set[str]:
        """Every sample name the exposition declares (a labelled family may have no sample yet)."""
        names = set()
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", self.text, re.M):
            names |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
        return names


async def scrape(http) -> Scrape:
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(r.text)


async def test_metrics_show_a_send_its_delivery_and_the_actors_behind_them(raychat, http):
    before = await scrape(http)
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa, sb = await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, b)
    try:
        k = await sa.send(cid, "hello metrics")
        await sa.wait_for(lambda: k in sa.acks)
        await sb.wait_for(lambda: "hello metrics" in sb.bodies.values())

        # The hosts answer within the scrape; the push worker counts its outcome after its step.
        def settled(s: Scrape) -> bool:
            return (s.total(f"{m.PUSH_JOBS}", outcome="skipped_online")
                    > before.total(m.PUSH_JOBS, outcome="skipped_online")
                    and s.total(m.SOURCES_SKIPPED) == 0)
        now = await scrape(http)
        for _ in range(60):
            if settled(now):
                break
            await asyncio.sleep(0.5)
            now = await scrape(http)

        for family in m.ALL:
            assert any(name == family or name.startswith(family + "_") for name in now.declared()), family
        assert now.total(m.MESSAGES_ACCEPTED) >= before.total(m.MESSAGES_ACCEPTED) + 1
        assert {h for h in now.labels(m.MESSAGES_ACCEPTED, "host")} <= set(now.labels(m.ACTIVE_ACTORS, "host"))
        assert now.total(m.ACK_LATENCY + "_count", transport="ws") >= before.total(m.ACK_LATENCY + "_count", transport="ws") + 1
        assert 0 < now.total(m.ACK_LATENCY + "_sum", transport="ws") < 60 * now.total(m.ACK_LATENCY + "_count")
        assert now.total(m.DELIVERY_LATENCY + "_count", transport="ws") >= \
            before.total(m.DELIVERY_LATENCY + "_count", transport="ws") + 2     # a's own socket and b's
        assert now.total(m.FANOUT_RECIPIENTS + "_count") >= before.total(m.FANOUT_RECIPIENTS + "_count") + 1
        assert now.total(m.FANOUT_RECIPIENTS + "_sum") >= before.total(m.FANOUT_RECIPIENTS + "_sum") + 2
        assert now.total(m.LIVE_SOCKETS, transport="ws") >= 2
        assert now.labels(m.LIVE_SOCKETS, "replica") and None not in now.labels(m.LIVE_SOCKETS, "replica")
        assert now.total(m.ACTIVE_ACTORS, kind="conv") >= 1 and now.total(m.ACTIVE_ACTORS, kind="user") >= 2
        assert now.total(m.ACTIVATIONS, kind="conv") >= 1
        assert now.total(m.MAILBOX_DEPTH_MAX) >= 0 and m.MAILBOX_QUEUED in now.families
        assert set(now.labels(m.PUSH_JOBS, "outcome")) == set(m.PUSH_OUTCOMES)
        assert settled(now), "the push outcome never showed, or a host kept missing the scrape"
        assert dashboard_metric_names() <= now.declared(), dashboard_metric_names() - now.declared()
    finally:
        await sa.close()
        await sb.close()
