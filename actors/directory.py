"""The membership directory: one detached actor that keeps the ActorHosts in step with the nodes.

``raychat-directory`` (num_cpus=0, restarted by Ray, on the head node) looks at the alive
nodes about once a second and makes sure each runs its share of hosts (the ``hosts``
setting, or the node's ``raychat_hosts`` resource), pinned to it; hosts of nodes that left
are dropped from the view and killed for good (pinned to a node that is gone, Ray would
keep them pending forever). The decisions are pure (actors/membership.py); this module only
talks to Ray.

The view ``{version, hosts}`` is what routers and hosts compute owners from. A host enters
it only once it answers ``ready``, and leaves it before it is stopped. ``watch`` is a
long-poll, so watchers learn of a change at once without polling hot. A restarted directory
knows nothing: it finds the hosts again by their names (derived from node ids) and publishes
nothing until it has, so no watcher ever sees an empty view that is not true.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raychat import logs
from raychat.clock import Clock, SystemClock
from raychat.config import Settings

from .host import ActorHost
from .membership import (DIRECTORY_NAME, EMPTY, HEAD_RESOURCE, IdleNodes, View, desired_hosts, hosts_on, in_use,
                         is_host_name, next_version, plan)

log = logging.getLogger("raychat.directory")

RECONCILE_S = 1.0          # how often the nodes are looked at (and how soon a change is seen)
WATCH_S = 10.0             # a long-poll answers after this even when nothing changed
READY_TIMEOUT_S = 120.0    # a host that is not ready by then is given up and tried again
LEAVE_TIMEOUT_S = 10.0     # a host leaving a live node gets this long to hand its keys over

RemoteHost = ray.remote(ActorHost)


def host_handle(name: str, settings: Settings, node_id: str):
    """Start (or find, by name) the host ``name`` pinned to ``node_id``."""
    return RemoteHost.options(
        name=name, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
        max_restarts=-1,          # Ray brings a crashed host back; its actors reactivate on their next message
        max_task_retries=0,       # callers retry (sends are idempotent), so a poison call cannot loop
        num_cpus=0, max_concurrency=100_000,
        # Hard: a host belongs to its node. Placed elsewhere it would outlive the node and
        # shift load the operator put there.
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(name, settings.to_dict(), freeze_gc=True)


class Directory:
    def __init__(self, settings: dict[str, Any], clock: Clock | None = None):
        self.settings = Settings.from_dict(settings)
        logs.configure(self.settings.log_level, self.settings.log_format)
        self.clock = clock or SystemClock()
        self.view = EMPTY
        self.members: dict[str, str] = {}          # host name -> node id, as published
        self.starting: set[str] = set()
        self._ready: dict[str, str] = {}           # started since the last round: name -> node id
        self._published = asyncio.Event()          # set (and replaced) on every publish
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.idle = IdleNodes(self.settings.hosts_leave_idle_node_s)
        self.rounds = 0

    # ---- what watchers call ----------------------------------------------------------
    async def view_now(self) -> dict[str, Any]:
        """The current view (version 0 and no hosts until the first one is published)."""
        self._ensure_started()
        return self.view.to_dict()

    async def watch(self, known_version: int, timeout_s: float = WATCH_S) -> dict[str, Any]:
        """The view as soon as its version differs from ``known_version``, or after ``timeout_s``."""
        self._ensure_started()
        # Before its first view a restarted directory has nothing true to say: wait for it.
        if self.view.version in (known_version, 0):
            try:
                await asyncio.wait_for(self._published.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        return self.view.to_dict()

    async def status(self) -> dict[str, Any]:
        """For operators and tests: the view and what is in flight."""
        self._ensure_started()
        return {**self.view.to_dict(), "nodes": dict(self.members), "starting": sorted(self.starting),
                "rounds": self.rounds}

    # ---- reconciling -----------------------------------------------------------------
    def _ensure_started(self) -> None:
        # Started by the first call rather than in __init__, which runs outside the actor's
        # event loop; every watcher calls, so a restarted directory starts again at once.
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except Exception:
                log.exception("membership round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), RECONCILE_S)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def _cluster(self) -> tuple[dict[str, int], set[str]]:
        """Alive nodes with their host counts, and the host names Ray has registered."""
        totals = {n["NodeID"]: n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")}
        available: dict[str, dict[str, float]] = {}
        if self.idle.release_after_s is not None:
            # A DeveloperAPI: per-node availability is what tells a reserved node from one that
            # only runs hosts (ray.nodes() gives totals only).
            available = ray._private.state.available_resources_per_node()
        now = self.clock.monotonic()
        self.idle.forget_all_but(totals)
        nodes = {}
        for node, total in totals.items():
            keeps = self.idle.keeps_hosts(node, head=HEAD_RESOURCE in total,
                                          used=in_use(total, available.get(node, total)), now=now)
            nodes[node] = hosts_on(total, self.settings.hosts) if keeps else 0
        existing = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                    if a.get("namespace") == self.settings.namespace and is_host_name(a["name"])}
        return nodes, existing

    async def _round(self) -> None:
        self.rounds += 1
        nodes, existing = await asyncio.to_thread(self._cluster)
        changed = False
        ready, self._ready = self._ready, {}
        want = desired_hosts(nodes)
        for name, node in ready.items():
            if name in want:
                self.members[name] = node
                changed = True
            else:      # its node left (or let its hosts go) while it started
                existing.discard(name)
                self._spawn(self._kill(name, node if node in nodes else None))
        p = plan(nodes, self.members, self.starting, existing | (set(ready) & want.keys()))
        leaving: list[tuple[str, str | None]] = []
        for name in p.drop:
            node = self.members.pop(name, None)
            changed = changed or node is not None
            leaving.append((name, node if node in nodes else None))
        for name, node in p.start + p.revive:
            self.starting.add(name)
            self._spawn(self._start(name, node))
        # The first view waits for every first host: an empty one would send every call away,
        # a partial one would move keys again a moment later.
        first = self.view.version == 0
        if (changed and not first) or (first and self.members and not self.starting):
            self._publish()
        for name, live_node in leaving:      # after the publish: nobody routes to them any more
            self._spawn(self._kill(name, live_node))

    def _publish(self) -> None:
        self.view = View(next_version(self.view.version, self.clock.now()), tuple(sorted(self.members)))
        log.info("membership view %s: %d hosts", self.view.version, len(self.view.hosts))
        published, self._published = self._published, asyncio.Event()
        published.set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, name: str, node: str) -> None:
        try:
            handle = await asyncio.to_thread(host_handle, name, self.settings, node)
            await asyncio.wait_for(handle.ready.remote(), READY_TIMEOUT_S)
            self._ready[name] = node
        except Exception as exc:   # the next round tries again if the slot is still wanted
            log.warning("host %s on node %s did not start: %r", name, node[:12], exc)
        finally:
            self.starting.discard(name)
            self._wake.set()

    async def _kill(self, name: str, live_node: str | None) -> None:
        """Stop a host for good. One on a live node first hands its keys over (passivating
        them, checkpoints flushed); one whose node is gone has nothing left to hand over."""
        try:
            handle = await asyncio.to_thread(ray.get_actor, name, self.settings.namespace)
        except ValueError:
            return
        if live_node is not None:
            try:
                await asyncio.wait_for(handle.leave.remote(self.view.to_dict()), LEAVE_TIMEOUT_S)
            except Exception as exc:
                log.warning("host %s did not hand over cleanly: %r", name, exc)
        ray.kill(handle, no_restart=True)
        log.info("host %s stopped", name)


RemoteDirectory = ray.remote(Directory)


def ensure_directory(settings: Settings):
    """The directory's handle, starting it if this is the first caller."""
    return RemoteDirectory.options(
        name=DIRECTORY_NAME, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
        max_restarts=-1, num_cpus=0, max_concurrency=10_000,
        # On the head: worker nodes come and go with the autoscaler, the head stays.
        resources={HEAD_RESOURCE: 0.001},
    ).remote(settings.to_dict())


def current_view(namespace: str, timeout_s: float = 60.0) -> View:
    """The published view, waiting for the first one (for tests, benchmarks and operators)."""
    directory = ray.get_actor(DIRECTORY_NAME, namespace=namespace)
    view = View.from_dict(ray.get(directory.view_now.remote(), timeout=timeout_s))
    if view.version == 0:
        view = View.from_dict(ray.get(directory.watch.remote(0, timeout_s), timeout=timeout_s + 5))
    return view
