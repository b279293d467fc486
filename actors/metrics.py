"""An ActorHost's metrics (raychat/metrics.py names them): its virtual actors, their mailboxes,
the messages its conversations accept and how wide they fan out.

Counters and histograms count as things happen (an increment or an observe: no Ray call, no
I/O); the gauges are read from the registry when a gateway asks (``exposition``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from raychat import metrics as m

REGISTRY = m.new_registry()

MESSAGES_ACCEPTED = Counter(m.MESSAGES_ACCEPTED, "Messages stored and acknowledged by their conversation",
                            registry=REGISTRY)
FANOUT_RECIPIENTS = Histogram(m.FANOUT_RECIPIENTS, "Users one conversation event is fanned out to "
                              "(members, online or not)", buckets=m.FANOUT_BUCKETS, registry=REGISTRY)
ACTIVATIONS = Counter(m.ACTIVATIONS, "Virtual actors activated, by kind", ["kind"], registry=REGISTRY)
PASSIVATIONS = Counter(m.PASSIVATIONS, "Virtual actors passivated, by kind and reason", ["kind", "reason"],
                       registry=REGISTRY)
ACTIVE_ACTORS = Gauge(m.ACTIVE_ACTORS, "Virtual actors in memory, by kind", ["kind"], registry=REGISTRY)
MAILBOX_DEPTH_MAX = Gauge(m.MAILBOX_DEPTH_MAX, "Messages waiting in the fullest mailbox", registry=REGISTRY)
MAILBOX_QUEUED = Gauge(m.MAILBOX_QUEUED, "Messages waiting in every mailbox together", registry=REGISTRY)


def exposition(registry) -> str:
    """This process's metrics as text, with the gauges read from ``registry`` (actors/registry.py)."""
    for kind in registry.kinds:
        ACTIVE_ACTORS.labels(kind).set(registry.count(kind))
    depths = registry.mailbox_depths()
    MAILBOX_DEPTH_MAX.set(max(depths, default=0))
    MAILBOX_QUEUED.set(sum(depths))
    return m.text(REGISTRY)
