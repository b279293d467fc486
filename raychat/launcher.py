"""Run the embedded default as one supervised process tree, and take all of it down on a signal.

What ``raychat up`` starts, in order, and stops in reverse:

    SecantusDB (unless RAYCHAT_MONGODB_URI)   on-disk, under <data-dir>/mongo
    redis-server (unless RAYCHAT_REDIS_URL)   under <data-dir>/redis
    a local Ray cluster (or RAY_ADDRESS's)    ray.init: GCS, raylet, workers
    Serve, the raychat application and        serve.start + serve.run
    the raychat-push one (the push worker)

Stopping (first SIGINT or SIGTERM): ``serve.shutdown()`` (bounded, so open sockets cannot hold
it past the budget), ``ray.shutdown()`` (kills the GCS, raylet and workers it started), then each
embedded server. Last, a sweep: every process that was our descendant, or whose command line
names our Ray session dir, and is still alive gets SIGTERM then SIGKILL.

Signals are counted by a thread reading Python's signal wakeup fd, not by the Python-level
handler: that handler only runs when the main thread gets back to bytecode, which can take
seconds inside ray.init. So the watchdog (which forces the sweep and exits if the orderly path
overruns) and a second Ctrl-C (which forces at once) work whatever the main thread is doing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from raychat.config import Settings, check_tls_files

log = logging.getLogger("raychat.launcher")

APP_NAME = "raychat"
PUSH_APP_NAME = "raychat-push"
STOP_BUDGET_S = 30.0          # the promise: everything gone within this after the first signal
FORCE_AFTER_S = 26.0          # the watchdog's deadline for the orderly path
SERVE_STOP_S = 12.0           # serve.shutdown() alone would wait up to 30 s for the controller
SERVER_STOP_MIN_S = 1.0       # an embedded server gets what is left of the budget, at least this
SWEEP_GRACE_S = 2.0           # between SIGTERM and SIGKILL in the final sweep
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(Exception):
    """A first SIGINT or SIGTERM during start-up: unwind, then stop what was started."""


class Launcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).expanduser().resolve()
        self._servers: list[Any] = []          # storage.embedded.EmbeddedServer, in start order
        self._own_ray = False                  # we started the local cluster (not RAY_ADDRESS's)
        self._ray_up = False                   # set before each start call: a half start is stopped too
        self._serve_up = False
        self._running = False                  # start-up done, in _wait()
        self._aborting = False                 # start-up interrupted by a signal
        self._session_dir: str | None = None
        self._known: dict[int, float] = {}     # pid -> create_time of every descendant seen
        self._stop_requested = threading.Event()
        self._signals = 0
        self._watchdog: threading.Timer | None = None
        self._deadline = 0.0                   # time.monotonic() at which the watchdog forces
        self._stopping = False
        self._lock = threading.Lock()
        self._wakeup_w: int | None = None

    # ---- the whole life -------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, print the one "is up" line, block until a signal, stop everything.

        Returns the exit code: 0 after a signal, 1 if an embedded server died on its own.
        """
        check_tls_files(self.settings)      # before anything starts, so nothing is left to stop
        self._install_signal_handlers()
        code = 0
        try:
            settings = self._start_stores(self.settings)
            self._start_ray(settings)
            self._start_serve(settings)
            scheme = "https" if settings.tls_cert else "http"
            print(f"raychat is up on {scheme}://{settings.host}:{settings.port} (data in {self.data_dir})",
                  flush=True)
            code = self._wait()
        except Stop:
            code = 0
        finally:
            self.stop()
        return code

    # ---- starting -------------------------------------------------------------------------

    def _start_stores(self, settings: Settings) -> Settings:
        from gateway.tokens import load_or_create_secret

        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "media").mkdir(exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        update: dict[str, Any] = {"data_dir": self.data_dir}

        if settings.mongodb_uri is None or settings.redis_url is None:
            from storage import embedded
        if settings.mongodb_uri is None:
            # An ack promises a durable event: with journaling on, every commit is fsynced.
            server = embedded.start_mongo(self.data_dir / "mongo", log_path=logs / "mongo.log",
                                          sync_on_commit=settings.write_journal)
            self._servers.append(server)
            log.info("started embedded MongoDB (SecantusDB) at %s, pid %s", server.uri, server.pid)
            update["mongodb_uri"] = server.uri
        else:
            log.info("using MongoDB from RAYCHAT_MONGODB_URI")

        if settings.redis_url is None:
            server = embedded.start_redis(self.data_dir / "redis", log_path=logs / "redis.log")
            self._servers.append(server)
            log.info("started embedded redis-server at %s, pid %s", server.uri, server.pid)
            update["redis_url"] = server.uri
        else:
            log.info("using Redis from RAYCHAT_REDIS_URL")

        if settings.jwt_secret is None:
            update["jwt_secret"] = load_or_create_secret(self.data_dir)
        self._remember_descendants()
        return settings.model_copy(update=update)

    def _start_ray(self, settings: Settings) -> None:
        import ray

        # address=None would join any cluster `ray start` left on this machine; only RAY_ADDRESS may.
        address = os.environ.get("RAY_ADDRESS") or "local"
        self._own_ray = address == "local"
        self._ray_up = True
        if self._own_ray:
            # Serve reads its front-door switches from the environment its processes start with:
            # the local cluster's raylet inherits ours. A cluster of `ray start` sets them itself
            # (cluster.yaml).
            os.environ.update(self._ingress_env(settings))
        ray.init(address=address, include_dashboard=False, namespace=settings.namespace)
        # ray.init installs its own SIGTERM handler (sys.exit); ours must win.
        self._install_signal_handlers()
        if self._own_ray:
            self._session_dir = _ray_session_dir()
        log.info("Ray is up (%s cluster, namespace %r)", "local" if self._own_ray else address,
                 settings.namespace)
        self._remember_descendants()

    def _ingress_env(self, settings: Settings) -> dict[str, str]:
        from raychat.ingress import free_port_window, proxy_env, serve_env

        if settings.ingress == "haproxy" and settings.tls_cert:
            log.info("TLS is on: Serve's proxy terminates it, so it stays the front door")
            return proxy_env(settings.ws_compression)
        from storage.embedded import free_listen_port

        # HAProxy's stats and metrics listeners and Serve's fallback proxy default to fixed ports
        # (8404, 9101, 8500): free ones, unless
        # the operator chose, so a second raychat (or a test cluster) on this machine can start.
        ports = {name: None if f"RAY_SERVE_HAPROXY_{name.upper()}_PORT" in os.environ else free_listen_port()
                 for name in ("stats", "metrics")}
        ports["fallback"] = None if "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT" in os.environ else free_listen_port()
        window = None if "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT" in os.environ else free_port_window()
        ingress, env = serve_env(settings.ingress, stats_port=ports["stats"], metrics_port=ports["metrics"],
                                 replica_ports=window, fallback_port=ports["fallback"],
                                 ws_compression=settings.ws_compression)
        log.info("front door: %s", "HAProxy, WebSockets straight to the gateway replicas" if ingress == "haproxy"
                 else "Serve's proxy")
        return env

    def _start_serve(self, settings: Settings) -> None:
        from ray import serve

        from serve_app import build_app, build_push_app

        self._serve_up = True
        # Never set request_timeout_s: it would cut every WebSocket at that age.
        http_options: dict[str, Any] = {"host": settings.host, "port": settings.port}
        if settings.tls_cert:
            # Serve's proxy (uvicorn) terminates TLS itself: HTTPS and WSS on the same port.
            http_options.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
        serve.start(http_options=http_options)
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
        if settings.push_enabled:
            # Its own application (no route), so operators scale it apart from the gateway.
            serve.run(build_push_app(settings), name=PUSH_APP_NAME, route_prefix=None)
        self._remember_descendants()

    # ---- running --------------------------------------------------------------------------

    def _wait(self) -> int:
        self._running = True
        while not self._stop_requested.wait(1.0):
            for server in self._servers:
                rc = server.proc.poll()
                if rc is not None:
                    log.error("embedded %s (pid %s) exited with code %s; stopping raychat",
                              server.name, server.pid, rc)
                    return 1
            self._remember_descendants()
        return 0

    # ---- signals --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        if self._wakeup_w is None:
            r, w = os.pipe()
            os.set_blocking(w, False)
            self._wakeup_w = w
            threading.Thread(target=self._read_signals, args=(r,), name="raychat-signals",
                             daemon=True).start()
        signal.set_wakeup_fd(self._wakeup_w)

    def _read_signals(self, fd: int) -> None:
        """Count stop signals as they arrive (the C-level handler writes each one's number)."""
        while True:
            for signum in os.read(fd, 64):
                if signum in STOP_SIGNALS:
                    self._count_signal(signum)

    def _count_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        with self._lock:
            self._signals += 1
            first = self._signals == 1
        if not first:
            log.warning("second %s: forcing every process down now", name)
            self._force(exit_code=128 + signum)
        log.info("%s received: stopping raychat (at most %.0f s; again to force)", name, STOP_BUDGET_S)
        self._arm_watchdog()
        self._stop_requested.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Counting happens in _read_signals; here the main thread only leaves start-up early, once.
        if not self._running and not self._stopping and not self._aborting:
            self._aborting = True
            raise Stop(signal.Signals(signum).name)

    # ---- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this launcher started, in reverse order, within STOP_BUDGET_S."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        started = time.monotonic()
        self._arm_watchdog()
        self._remember_descendants()
        if self._serve_up:
            self._stop_serve()
        if self._ray_up:
            import ray

            try:
                ray.shutdown()
                log.info("Ray is down" if self._own_ray else "disconnected from Ray")
            except Exception:
                log.exception("ray.shutdown() failed; the sweep ends what it left")
        for server in reversed(self._servers):
            # A database checkpoints as it closes: leave it all the time the budget allows,
            # less the final sweep's, rather than SIGKILL it early.
            timeout = max(SERVER_STOP_MIN_S, self._deadline - time.monotonic() - 2 * SWEEP_GRACE_S - 1)
            try:
                server.stop(timeout=timeout)
                log.info("stopped embedded %s", server.name)
            except Exception:
                log.exception("stopping embedded %s failed", server.name)
        left = self._sweep()
        if left:
            log.warning("had to end %d leftover process(es): %s", len(left), left)
        if self._watchdog is not None:
            self._watchdog.cancel()
        log.info("raychat stopped in %.1f s", time.monotonic() - started)

    def _stop_serve(self) -> None:
        from ray import serve

        try:
            if self._own_ray:
                # shutdown_async is serve.shutdown() with a deadline we choose.
                asyncio.run(asyncio.wait_for(serve.shutdown_async(), SERVE_STOP_S))
                log.info("Serve is down")
            else:
                for name in (APP_NAME, PUSH_APP_NAME):   # a shared cluster keeps its other Serve applications
                    serve.delete(name)
                    log.info("Serve application %r deleted", name)
        except (TimeoutError, asyncio.TimeoutError):
            log.warning("Serve did not stop within %.0f s; Ray's shutdown ends it", SERVE_STOP_S)
        except Exception:
            log.exception("stopping Serve failed; Ray's shutdown ends it")
        finally:
            if self._wakeup_w is not None:
                signal.set_wakeup_fd(self._wakeup_w)   # in case the event loop took it over

    def _arm_watchdog(self) -> None:
        with self._lock:
            if self._watchdog is not None:
                return
            self._watchdog = threading.Timer(FORCE_AFTER_S, self._on_overrun)
            self._watchdog.daemon = True
            self._deadline = time.monotonic() + FORCE_AFTER_S
        self._watchdog.start()

    def _on_overrun(self) -> None:
        log.error("orderly stop overran %.0f s: forcing every process down", FORCE_AFTER_S)
        self._force(exit_code=1)

    def _force(self, exit_code: int) -> None:
        """SIGKILL everything we started and leave at once (safe from any thread)."""
        for proc in self._leftovers():
            try:
                proc.kill()
            except psutil.Error:
                pass
        logging.shutdown()
        os._exit(exit_code)

    # ---- the leftover sweep ---------------------------------------------------------------

    def _remember_descendants(self) -> None:
        """Record current descendants: once a parent (the raylet) dies its children are
        re-parented to init, and only this record still ties them to us."""
        try:
            for child in psutil.Process().children(recursive=True):
                self._known.setdefault(child.pid, _create_time(child))
        except psutil.Error:
            pass

    def _leftovers(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid, created in list(self._known.items()):
            try:
                proc = psutil.Process(pid)
                if _create_time(proc) == created and proc.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = proc
            except psutil.Error:
                pass
        for server in self._servers:
            try:
                if server.proc.poll() is None:
                    found.setdefault(server.pid, psutil.Process(server.pid))
            except psutil.Error:
                pass
        if self._own_ray and self._session_dir:
            # Only a cluster we started: RAY_ADDRESS's processes are not ours to end.
            for proc in psutil.process_iter(["cmdline", "status"]):
                try:
                    if (proc.info["status"] != psutil.STATUS_ZOMBIE
                            and any(self._session_dir in arg for arg in proc.info["cmdline"] or ())):
                        found.setdefault(proc.pid, proc)
                except psutil.Error:
                    pass
        found.pop(os.getpid(), None)
        return list(found.values())

    def _sweep(self) -> list[str]:
        procs = self._leftovers()
        described = [_describe(p) for p in procs]
        for proc in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=SWEEP_GRACE_S)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=SWEEP_GRACE_S)
        return described


def _ray_session_dir() -> str | None:
    try:
        # No public accessor exists; the session dir is only used to find leftovers.
        import ray._private.worker as worker

        return worker._global_node.get_session_dir_path()
    except Exception:
        log.debug("Ray session dir unknown; the leftover sweep uses descendants only", exc_info=True)
        return None


def _create_time(proc: psutil.Process) -> float:
    try:
        return proc.create_time()
    except psutil.Error:
        return -1.0


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


def run(settings: Settings) -> int:
    return Launcher(settings).run()


if sys.platform == "win32":  # pragma: no cover - the launcher relies on POSIX signals
    raise ImportError("raychat up runs on Linux and macOS")
