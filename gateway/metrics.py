"""A gateway replica's metrics (raychat/metrics.py names them), and the exposition ``GET /metrics``
answers: this replica's, every ActorHost's and the cluster-wide push outcomes, merged.

Latencies are observed where they happen (a histogram observe, no I/O). A scrape costs one Ray
call per host, side by side, each cut at ``HOST_TIMEOUT_S``: a host that does not answer is
left out and counted in ``raychat_metrics_sources_skipped{source="host"}``, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from prometheus_client import Gauge, Histogram

from raychat import metrics as m
from storage.errors import StoreError

log = logging.getLogger(__name__)

REGISTRY = m.new_registry()

ACK_LATENCY = Histogram(m.ACK_LATENCY, "From a send reaching the gateway to its ack queued for the client",
                        ["transport"], buckets=m.LATENCY_BUCKETS, registry=REGISTRY)
DELIVERY_LATENCY = Histogram(m.DELIVERY_LATENCY, "From an event's created_at to its frame written to a "
                             "client's connection", ["transport"], buckets=m.LATENCY_BUCKETS, registry=REGISTRY)
LIVE_SOCKETS = Gauge(m.LIVE_SOCKETS, "Open client connections on this replica, by transport", ["transport"],
                     registry=REGISTRY)

TRANSPORTS = ("ws", "sse")
# Short: Prometheus's own scrape timeout is 10 s by default, and a late host only costs its samples.
HOST_TIMEOUT_S = 2.0


class Scraper:
    """Builds the exposition for one replica: its hub (connections), its router (the hosts)
    and the push outcome tally (push/tally.py; None leaves push_jobs out)."""

    def __init__(self, router: Any, hub: Any, tally: Any = None, *, host_timeout_s: float = HOST_TIMEOUT_S):
        self.router = router
        self.hub = hub
        self.tally = tally
        self.host_timeout_s = host_timeout_s

    async def exposition(self) -> str:
        by_transport = Counter(conn.transport for conn in list(self.hub.conns.values()))
        for transport in TRANSPORTS:
            LIVE_SOCKETS.labels(transport).set(by_transport.get(transport, 0))
        parts: list[tuple[dict[str, str], Any]] = [({"replica": self.hub.replica_id}, list(REGISTRY.collect()))]
        skipped = Counter({"host": 0})
        hosts = list(self.router.names)
        for name, text in zip(hosts, await asyncio.gather(*(self._host_text(n) for n in hosts))):
            if text is None:
                skipped["host"] += 1
                continue
            try:
                parts.append(({"host": name}, m.parse(text)))
            except ValueError as exc:      # a host of another version, or a bug: still the rest
                log.warning("metrics of host %s unreadable: %r", name, exc)
                skipped["host"] += 1
        cluster = []
        if self.tally is not None:
            skipped["push"] = 0
            try:
                cluster.append(m.push_jobs(await self.tally.read()))
            except StoreError as exc:
                log.info("push outcomes unavailable for this scrape: %r", exc)
                skipped["push"] += 1
        cluster.append(m.sources_skipped(skipped))
        parts.append(({}, cluster))
        return m.merge(parts)

    async def _host_text(self, name: str) -> str | None:
        try:
            handle = await self.router.handle(name)
            return await asyncio.wait_for(handle.metrics.remote(), self.host_timeout_s)
        except Exception as exc:     # restarting, gone, or slow: this scrape goes on without it
            log.info("metrics of host %s left out: %r", name, exc)
            return None
