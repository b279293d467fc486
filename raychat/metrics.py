"""The metrics at ``GET /metrics`` (Prometheus text format): their names, buckets, and the merge
of every process's samples into one answer.

prometheus_client is the reference client (kept by the Prometheus project); it does the counting
and the text format, both ways. Each process keeps its own registry (``new_registry``): a gateway
replica its sockets and latencies (gateway/metrics.py), an ActorHost its virtual actors
(actors/metrics.py). The replica that answers a scrape asks every host for its text, labels each
sample with where it came from (``replica`` or ``host``) so that series never collide, and
renders the lot as one exposition (``merge``). No Ray import here: the callers move the text.

Names follow Prometheus practice: ``raychat_`` prefix, base units (seconds), counters end in
``_total``. The Grafana dashboard (docs/grafana/raychat.json) uses exactly these names.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from storage import errors as store_errors

# The classic text format, which every Prometheus and agent reads (prometheus_client's own
# CONTENT_TYPE_LATEST now names version 1.0.0, which older scrapers refuse).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---- names, as exposed ------------------------------------------------------------------------
MESSAGES_ACCEPTED = "raychat_messages_accepted_total"      # host: messages stored and acknowledged
ACK_LATENCY = "raychat_ack_latency_seconds"                # gateway: send received -> ack queued to the client
DELIVERY_LATENCY = "raychat_delivery_latency_seconds"      # gateway: event created_at -> frame written
FANOUT_RECIPIENTS = "raychat_fanout_recipients"            # host: users one event is fanned out to
LIVE_SOCKETS = "raychat_live_sockets"                      # gateway: open connections, by transport
ACTIVE_ACTORS = "raychat_active_actors"                    # host: virtual actors in memory, by kind
ACTIVATIONS = "raychat_activations_total"                  # host: by kind
PASSIVATIONS = "raychat_passivations_total"                # host: by kind and reason
MAILBOX_DEPTH_MAX = "raychat_mailbox_depth_max"            # host: the longest mailbox now
MAILBOX_QUEUED = "raychat_mailbox_queued_messages"         # host: messages waiting in all mailboxes
STORE_ERRORS = "raychat_store_errors_total"                # any process: by adapter and error class
PUSH_JOBS = "raychat_push_jobs_total"                      # cluster-wide (Redis): by outcome
SOURCES_SKIPPED = "raychat_metrics_sources_skipped"        # this scrape: hosts (or the push tally) that did not answer

# Every family a gateway's /metrics shows (with samples once there is traffic).
ALL = (MESSAGES_ACCEPTED, ACK_LATENCY, DELIVERY_LATENCY, FANOUT_RECIPIENTS, LIVE_SOCKETS, ACTIVE_ACTORS,
       ACTIVATIONS, PASSIVATIONS, MAILBOX_DEPTH_MAX, MAILBOX_QUEUED, STORE_ERRORS, PUSH_JOBS, SOURCES_SKIPPED)

# Seconds: 1 ms (same host, idle) up to 10 s (a store outage rides out store_timeout_ms).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Recipients: a direct conversation (2) up to max_group_members (10,000 by default).
FANOUT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

# Push job outcomes (push/tally.py counts them in Redis).
PUSH_OUTCOMES = ("delivered", "retried", "dead", "invalid_token", "collapsed", "skipped_online", "deferred",
                 "dropped")


class _StoreErrors:
    """``raychat_store_errors_total`` from storage's own tally (storage imports nothing of ours)."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(STORE_ERRORS, "Storage errors, by adapter and error class",
                                     labels=["adapter", "error"])
        for (adapter, error), n in sorted(store_errors.TALLY.items()):
            family.add_metric([adapter, error], n)
        yield family


def new_registry() -> CollectorRegistry:
    """A process's registry; it carries the process's storage error counts already."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_StoreErrors())
    return registry


def text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def parse(exposition: str) -> list[Metric]:
    """The families of a text exposition (raises ValueError if it is not one)."""
    return list(text_string_to_metric_families(exposition))


def push_jobs(counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(PUSH_JOBS, "Push jobs settled, by outcome, over every push worker",
                                 labels=["outcome"])
    for outcome in PUSH_OUTCOMES:
        family.add_metric([outcome], counts.get(outcome, 0))
    return family


def sources_skipped(skipped: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(SOURCES_SKIPPED, "Sources this scrape had to leave out, because they "
                               "did not answer in time", labels=["source"])
    for source, n in sorted(skipped.items()):
        family.add_metric([source], n)
    return family


def merge(parts: Iterable[tuple[Mapping[str, str], Iterable[Metric]]]) -> str:
    """One exposition from several sources: each part is (labels for its samples, its families).

    Families of one name become one (the text format allows a name once); ``_created`` samples
    are dropped (a restart shows as a counter reset anyway, and they would double the series).
    """
    families: dict[str, Metric] = {}
    for labels, source in parts:
        for fam in source:
            if fam.name.endswith("_created"):     # parsed from text, a counter's _created is a family
                continue
            out = families.get(fam.name)
            if out is None:
                out = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            elif out.type != fam.type:
                continue        # two processes disagree (a version skew): keep the first's
            for s in fam.samples:
                if s.name.endswith("_created"):
                    continue
                out.add_sample(s.name, {**s.labels, **labels}, s.value, s.timestamp, s.exemplar)

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            return iter(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return text(registry)
