"""Running a test's own Ray cluster in a child process, and ending exactly what it started.

A multi-node test cannot share the session's Ray (tests/fixtures_raychat.py): it runs its
scenario as ``python -m <module>`` in a child whose ``RAY_TMPDIR`` is a fresh directory. Every
Ray process of that cluster (GCS, raylets, workers, agents) names that directory in its
command line or environment, so afterwards exactly those processes are found and ended by
pid. Nothing else on the machine is touched: never ``ray stop``, never a kill by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def ray_tmpdir(prefix: str) -> Path:
    # Short and under /tmp: Ray's unix socket paths live below it and must stay under ~107 bytes.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def child_env(tmpdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({
        "RAY_TMPDIR": str(tmpdir),        # sessions and the "current cluster" file of this cluster only
        # Every node on 127.0.0.1, not the machine's network address: traffic stays on loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def processes_naming(marker: str) -> list[psutil.Process]:
    """Processes whose command line or environment names ``marker``. The environment too: Ray's
    workers retitle themselves (``ray::IDLE``), but keep the RAY_TMPDIR they inherited."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in arg for arg in proc.info["cmdline"] or ()) \
                    or any(marker in v for v in proc.environ().values()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def stop_processes(marker: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process whose command line names ``marker``; their pids."""
    procs = processes_naming(marker)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return [p.pid for p in procs]


def run_scenario(module: str, args: list[str], tmpdir: Path, timeout_s: float,
                 env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python -m module args`` with its own Ray; end it and everything naming ``tmpdir``."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env or child_env(tmpdir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += f"\n[scenario killed after {timeout_s:.0f} s]"
    finally:
        left = stop_processes(str(tmpdir))
        shutil.rmtree(tmpdir, ignore_errors=True)
    if left:
        out += f"\n[ended {len(left)} leftover Ray process(es) of this test]"
    return proc.returncode, out
