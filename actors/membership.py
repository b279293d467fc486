"""Which ActorHosts should exist, given the cluster's nodes: the pure half of the directory.

The directory (actors/directory.py) asks Ray for the alive nodes about once a second and
hands them here with the hosts it knows of; ``plan`` answers which hosts to start and which
to drop. Names are derived from the node id, so a restarted directory finds the same hosts
again by name, and every process that sees a view computes the same owners from it
(actors/placement.py). No Ray import: the tests drive this directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

HOST_PREFIX = "raychat-host-"
DIRECTORY_NAME = "raychat-directory"
# A node advertising this custom resource gets that many hosts instead of the `hosts` setting.
# It is only read, never requested: hosts use no resources, so the autoscaler still sees a
# node that runs nothing but hosts as idle and may remove it (its keys then move).
HOSTS_RESOURCE = "raychat_hosts"
MAX_HOSTS_PER_NODE = 1024


@dataclass(frozen=True)
class View:
    """The hosts that own keys now. ``version`` only grows, also across directory restarts."""

    version: int
    hosts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "hosts": list(self.hosts)}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "View":
        return View(int(data["version"]), tuple(data["hosts"]))


EMPTY = View(0, ())


def next_version(previous: int, now_s: float) -> int:
    """Milliseconds of wall time, and always past ``previous``: a restarted directory (which
    remembers nothing) still publishes versions above every one it published before, so
    watchers can tell a newer view from an older one by comparing numbers."""
    return max(previous + 1, int(now_s * 1000))


def host_name(node_id: str, index: int) -> str:
    # A digest of the whole id, not its first characters: ids Ray makes for tests (the fake
    # multi-node provider, RAY_OVERRIDE_NODE_ID_FOR_TESTING) share a long common prefix.
    digest = hashlib.blake2b(node_id.encode(), digest_size=6).hexdigest()
    return f"{HOST_PREFIX}{digest}-{index}"


def is_host_name(name: str) -> bool:
    return name.startswith(HOST_PREFIX)


def hosts_on(resources: Mapping[str, float], default: int) -> int:
    """How many hosts a node gets: its ``raychat_hosts`` resource if it has one, else ``default``.

    Ray drops resources of quantity 0 from a node, so a node cannot ask for no hosts this way.
    """
    advertised = resources.get(HOSTS_RESOURCE)
    count = default if advertised is None else int(advertised)
    return max(0, min(count, MAX_HOSTS_PER_NODE))


# Resources whose use says nothing about whether a node is needed: markers, and memory that
# lingers (Ray's raylet reports every leased worker, hosts included, as activity, which is why
# the directory looks at reservations instead).
_NOT_USE = ("memory", "object_store_memory", HOSTS_RESOURCE)
HEAD_RESOURCE = "node:__internal_head__"


def in_use(total: Mapping[str, float], available: Mapping[str, float]) -> bool:
    """Whether anything holds part of a node's CPUs, GPUs or custom resources."""
    return any(available.get(r, 0.0) < amount - 1e-9 for r, amount in total.items()
               if r not in _NOT_USE and not r.startswith("node:"))


class IdleNodes:
    """Which nodes keep their hosts when ``release_after_s`` is set.

    Ray counts a node with any live actor as busy, hosts included, so an autoscaler would never
    remove a node that runs hosts. With ``release_after_s``, a worker node whose resources
    nobody has reserved for that long (it only runs hosts) is given no hosts: they hand their
    keys over while the node is still alive, and the autoscaler can then remove it. A node
    counts as used from the moment it is first seen, so a node just added gets hosts at once.
    The head always keeps its hosts. ``None``: every node keeps its hosts.
    """

    def __init__(self, release_after_s: float | None):
        self.release_after_s = release_after_s
        self.last_used: dict[str, float] = {}

    def keeps_hosts(self, node: str, *, head: bool, used: bool, now: float) -> bool:
        if self.release_after_s is None or head:
            return True
        if used or node not in self.last_used:
            self.last_used[node] = now
        return now - self.last_used[node] < self.release_after_s

    def forget_all_but(self, nodes: Iterable[str]) -> None:
        alive = set(nodes)
        self.last_used = {n: t for n, t in self.last_used.items() if n in alive}


def desired_hosts(nodes: Mapping[str, int]) -> dict[str, str]:
    """{host name: node id} for alive nodes given as {node id: host count}."""
    return {host_name(node, i): node for node, count in nodes.items() for i in range(count)}


@dataclass(frozen=True)
class Plan:
    start: tuple[tuple[str, str], ...]    # (host name, node id): create (or find) and wait until ready
    drop: tuple[str, ...]                 # out of the view first, then killed for good
    revive: tuple[tuple[str, str], ...]   # members Ray no longer knows (killed for good): start again


def plan(nodes: Mapping[str, int], members: Iterable[str], starting: Iterable[str],
         existing: Iterable[str]) -> Plan:
    """Reconcile the hosts with the nodes.

    ``nodes``: alive nodes, {node id: host count}; ``members``: hosts in the published view;
    ``starting``: hosts being started, not yet in the view; ``existing``: host names Ray has
    registered (alive or restarting). A host is started once per node slot; a member or
    stray host whose slot is gone (node left, count lowered) is dropped; a member that Ray
    forgot (killed with no_restart) is started again under its name.
    """
    want = desired_hosts(nodes)
    members, starting, existing = set(members), set(starting), set(existing)
    start = tuple(sorted((n, want[n]) for n in want.keys() - members - starting))
    drop = tuple(sorted(((members | existing) - want.keys()) - starting))
    revive = tuple(sorted((n, want[n]) for n in (want.keys() & members) - existing - starting))
    return Plan(start, drop, revive)
