"""Run one job exactly as the README says: ``ray job submit --working-dir . -- python -m jobs.<job> ...``.

    python -m tests.jobs.submit_driver <seconds> <repo dir> <job module> [job args...]

Starts a private one-node cluster with ``ray start --head --block`` (its own temp dir, so its
address file is nowhere another process's ``ray.init()`` looks; every port picked free, as other
Rays run on this machine), submits with the ``ray job submit`` CLI, prints what it printed, and
stops that cluster by the pid of its ``ray start`` (which takes its processes down with it), then
its process group. Exit 0 only if the job succeeded. The RAYCHAT_* variables of this process go
to the job in ``--runtime-env-json``, as an operator's would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from storage.embedded import free_port


def main(argv: list[str]) -> int:
    deadline_s, repo, module, args = float(argv[0]), argv[1], argv[2], argv[3:]
    bin_dir = str(Path(sys.executable).parent)
    # A private cluster on 127.0.0.1 for one test: no token auth to set up.
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="rjobs-")
    dash = free_port()
    ports = {"--port": free_port(), "--dashboard-port": dash, "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
             "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(),
             "--object-manager-port": free_port(), "--ray-client-server-port": free_port()}
    head = subprocess.Popen(
        [f"{bin_dir}/ray", "start", "--head", "--block", "--num-cpus", "2", "--include-dashboard", "true",
         "--dashboard-host", "127.0.0.1", "--temp-dir", temp, "--disable-usage-stats",
         *[a for flag, port in ports.items() for a in (flag, str(port))]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + deadline_s
    try:
        while True:
            try:
                # Any answer will do (401 included: Ray's token auth; the CLI brings the token).
                httpx.get(f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except httpx.TransportError:
                if head.poll() is not None or time.monotonic() > end:
                    print(f"ray start did not come up (exit {head.poll()})")
                    return 1
                time.sleep(1)
        runtime_env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("RAYCHAT_")}}
        while True:
            proc = subprocess.run(
                [f"{bin_dir}/ray", "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", repo,
                 "--runtime-env-json", json.dumps(runtime_env), "--", "python", "-m", module, *args],
                env=env, cwd=repo, capture_output=True, text=True, timeout=max(1.0, end - time.monotonic()))
            # The dashboard answers before its agent, which runs jobs, has registered.
            if "No available agent" not in proc.stdout + proc.stderr or time.monotonic() > end:
                break
            time.sleep(2)
        print(proc.stdout)
        print(proc.stderr, file=sys.stderr)
        return 0 if proc.returncode == 0 and "succeeded" in proc.stdout else 1
    finally:
        head.send_signal(signal.SIGTERM)      # `ray start --block` stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)     # its own session: only what it started
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
