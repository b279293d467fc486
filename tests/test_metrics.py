"""The metric names, the merge of several processes' expositions, and the host's own metrics.

In-process, no Ray: an exposition is text, parsed back with prometheus_client's own parser (what
a Prometheus server reads is what these tests read).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Histogram

from actors import metrics as host_metrics
from actors.registry import PassivationReason, Registry
from gateway.metrics import Scraper
from raychat import metrics as m
from raychat.clock import FakeClock
from storage.errors import StoreUnavailable, counted


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in m.parse(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in m.parse(text) for s in f.samples if s.name == name]


def test_names_follow_prometheus_practice():
    for name in m.ALL:
        assert re.fullmatch(r"raychat_[a-z_]+", name), name
        assert name.endswith("_total") == (name in (m.MESSAGES_ACCEPTED, m.ACTIVATIONS, m.PASSIVATIONS,
                                                    m.STORE_ERRORS, m.PUSH_JOBS)), name
    assert len(set(m.ALL)) == len(m.ALL)
    assert list(m.LATENCY_BUCKETS) == sorted(m.LATENCY_BUCKETS) and list(m.FANOUT_BUCKETS) == sorted(m.FANOUT_BUCKETS)


def test_merge_labels_each_source_and_names_each_family_once():
    a, b = m.new_registry(), m.new_registry()
    for registry, n in ((a, 2), (b, 5)):
        Counter("raychat_things_total", "things", registry=registry).inc(n)
        Histogram("raychat_wait_seconds", "waits", registry=registry, buckets=(0.1, 1.0)).observe(0.5)
    text = m.merge([({"host": "h1"}, m.parse(m.text(a))), ({"host": "h2"}, list(b.collect()))])
    assert text.count("# TYPE raychat_things_total counter") == 1
    assert sorted((s["host"], v) for s, v in samples(text, "raychat_things_total")) == [("h1", 2.0), ("h2", 5.0)]
    assert {s["host"] for s, _ in samples(text, "raychat_wait_seconds_count")} == {"h1", "h2"}
    assert "_created" not in text, "creation timestamps would double the series"


def test_store_errors_are_counted_by_adapter_and_class():
    before = {(s["adapter"], s["error"]): v for s, v in samples(m.text(m.new_registry()), m.STORE_ERRORS)}
    err = counted("redis", StoreUnavailable("down"))
    assert isinstance(err, StoreUnavailable)
    after = {(s["adapter"], s["error"]): v for s, v in samples(m.text(m.new_registry()), m.STORE_ERRORS)}
    assert after[("redis", "StoreUnavailable")] == before.get(("redis", "StoreUnavailable"), 0) + 1


def test_push_jobs_show_every_outcome_even_before_the_first():
    text = m.merge([({}, [m.push_jobs({"delivered": 3})])])
    got = {s["outcome"]: v for s, v in samples(text, m.PUSH_JOBS)}
    assert got == {o: (3.0 if o == "delivered" else 0.0) for o in m.PUSH_OUTCOMES}


class Idle:
    batchable = frozenset()

    def __init__(self, ident):
        self.ident = ident

    async def on_activate(self):
        pass

    async def on_passivate(self, reason):
        pass

    async def handle(self, method, arg):
        if method == "block":
            await arg.wait()
        return arg

    async def handle_batch(self, method, args):
        return args

    def can_passivate(self):
        return True


def host_value(name: str, **labels: str) -> float:
    text = host_metrics.exposition(Registry({}, FakeClock(), idle_after_s=1, mailbox_capacity=10))
    return sum(v for s, v in samples(text, name) if all(s.get(k) == w for k, w in labels.items()))


async def test_the_host_counts_activations_and_passivations_by_kind_and_reason():
    clock = FakeClock()
    reg = Registry({"probe": Idle, "other": Idle}, clock, idle_after_s=60, mailbox_capacity=100)
    activated = host_value(m.ACTIVATIONS, kind="probe")
    idle = host_value(m.PASSIVATIONS, kind="probe", reason="idle")
    stopping = host_value(m.PASSIVATIONS, kind="probe", reason="host_stopping")
    for ident in ("a", "b", "c"):
        await reg.call("probe", ident, "hi")
    clock.advance(61)
    await reg.call("probe", "c", "hi")          # c stays busy-recent
    assert len(await reg.sweep()) == 2
    await reg.passivate_all(PassivationReason.HOST_STOPPING)
    assert host_value(m.ACTIVATIONS, kind="probe") == activated + 3
    assert host_value(m.PASSIVATIONS, kind="probe", reason="idle") == idle + 2
    assert host_value(m.PASSIVATIONS, kind="probe", reason="host_stopping") == stopping + 1


async def test_the_host_reports_active_actors_by_kind_and_its_mailboxes():
    reg = Registry({"probe": Idle, "other": Idle}, FakeClock(), idle_after_s=60, mailbox_capacity=100)
    gate = asyncio.Event()
    await reg.call("other", "x", "hi")
    blocked = reg.post("probe", "a", "block", gate)
    queued = [reg.post("probe", "a", "hi", i) for i in range(3)] + [reg.post("probe", "b", "hi", 0)]
    await asyncio.sleep(0.01)                   # a's first message is running, three wait behind it
    text = host_metrics.exposition(reg)
    active = {s["kind"]: v for s, v in samples(text, m.ACTIVE_ACTORS)}
    assert active == {"probe": 2.0, "other": 1.0}
    assert samples(text, m.MAILBOX_DEPTH_MAX) == [({}, 3.0)]
    assert samples(text, m.MAILBOX_QUEUED)[0][1] >= 3.0
    gate.set()
    await asyncio.gather(blocked, *queued)
    text = host_metrics.exposition(reg)
    assert samples(text, m.MAILBOX_DEPTH_MAX) == [({}, 0.0)]


# ---- the scrape: one call per host, a silent host left out and counted ------------------------
class _Remote:
    def __init__(self, answer):
        self._answer = answer

    def remote(self):
        return self._answer()


class _Host:
    def __init__(self, answer):
        self.metrics = _Remote(answer)


class _Router:
    """The two things Scraper uses of gateway/router.py: the host names and their handles."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.names = list(hosts)

    async def handle(self, name):
        return self.hosts[name]


class _Hub:
    replica_id = "gw-test"
    conns: dict = {}


async def test_a_scrape_labels_each_host_and_counts_one_that_does_not_answer():
    registry = m.new_registry()
    Counter(m.MESSAGES_ACCEPTED, "accepted", registry=registry).inc(7)
    text = m.text(registry)

    async def answers():
        return text

    async def hangs():
        await asyncio.sleep(60)

    scraper = Scraper(_Router({"h1": _Host(answers), "h2": _Host(hangs)}), _Hub(), host_timeout_s=0.2)
    out = await asyncio.wait_for(scraper.exposition(), 5)
    assert samples(out, m.MESSAGES_ACCEPTED) == [({"host": "h1"}, 7.0)]
    assert {s["source"]: v for s, v in samples(out, m.SOURCES_SKIPPED)} == {"host": 1.0}
    assert {s["transport"] for s, _ in samples(out, m.LIVE_SOCKETS)} == {"ws", "sse"}
    assert all(s["replica"] == "gw-test" for s, _ in samples(out, m.LIVE_SOCKETS))


@pytest.mark.parametrize("stat,outcome", [("delivered", "delivered"), ("dead_lettered", "dead"),
                                          ("invalid_tokens", "invalid_token"), ("dropped_apns_off", "dropped"),
                                          ("claimed", None), ("store_errors", None)])
def test_worker_stats_map_to_push_outcomes(stat, outcome):
    from push.tally import outcome_of

    assert outcome_of(stat) == outcome
    assert outcome is None or outcome in m.PUSH_OUTCOMES


# ---- the Grafana dashboard uses these names and no others ------------------------------------
DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "raychat.json"
HISTOGRAMS = (m.ACK_LATENCY, m.DELIVERY_LATENCY, m.FANOUT_RECIPIENTS)


def dashboard_metric_names() -> set[str]:
    """Every raychat_* name an ``expr`` of the dashboard reads."""
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", ())]
    assert exprs, "the dashboard has no queries"
    return {name for e in exprs for name in re.findall(r"\braychat_[a-z_]+\b", e)}


def exposed_sample_names() -> set[str]:
    names = set(m.ALL) - set(HISTOGRAMS)
    return names | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}


def test_the_dashboard_reads_only_exposed_names_and_shows_every_family():
    used = dashboard_metric_names()
    assert used <= exposed_sample_names(), used - exposed_sample_names()
    for family in m.ALL:
        assert any(name == family or name.startswith(family + "_") for name in used), f"{family} not on the dashboard"
