"""Autoscaling shown on one machine with Ray's fake multi-node provider (the scenario and its
checks: tests/faults/autoscale_scenario.py).

The head is started the way ``ray.cluster_utils.AutoscalingCluster`` does it (``ray start
--head --autoscaling-config=…`` with ``RAY_FAKE_CLUSTER=1``), but never through that class:
its start() and shutdown() run ``ray stop --force``, which kills every Ray on the machine.
This head has its own port and temp dir, and at the end exactly the processes naming that
temp dir are ended, by pid (tests/faults/procs.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage.embedded import free_listen_port
from tests.faults.procs import ROOT, child_env, ray_tmpdir, run_scenario, stop_processes

pytestmark = pytest.mark.e2e


def fake_cluster_config(gcs_port: int) -> dict:
    """The fake_multinode provider's config: a head with one CPU, up to two one-CPU workers
    that each advertise one raychat host, removed after 6 s idle."""
    return {
        "cluster_name": "raychat-fake",
        "max_workers": 2,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,           # every fake node has the same IP
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"127.0.0.1:{gcs_port}",   # else the provider assumes port 6379
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1, "raychat_gateway": 1}, "node_config": {},
                                 "max_workers": 0},
            "ray.worker.cpu": {"resources": {"CPU": 1, "raychat_hosts": 1}, "node_config": {},
                               "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "upscaling_speed": 2.0, "idle_timeout_minutes": 0.1,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }


def test_load_adds_nodes_hosts_follow_and_idle_nodes_go(mongo_server, redis_server):
    tmp = ray_tmpdir("rc-autoscale-")
    port = free_listen_port()
    config = tmp / "autoscaling.json"
    config.write_text(json.dumps(fake_cluster_config(port)))
    # `ray start` turns token authentication on by default; this cluster listens on loopback only.
    env = child_env(tmp, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_AUTH_MODE="disabled")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    try:
        subprocess.run([ray_bin, "start", "--head", f"--autoscaling-config={config}", f"--port={port}",
                        f"--temp-dir={tmp / 'ray'}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                        "--resources", json.dumps({"raychat_gateway": 1}), "--include-dashboard=false",
                        "--disable-usage-stats"],
                       cwd=ROOT, env=env, check=True, timeout=180, capture_output=True, text=True)
    except BaseException:
        stop_processes(str(tmp))
        raise
    code, out = run_scenario("tests.faults.autoscale_scenario",
                             ["--address", f"127.0.0.1:{port}", "--mongodb-uri", mongo_server.uri,
                              "--redis-url", redis_server.uri], tmp, timeout_s=420, env=env)
    print(out[-6000:])
    assert code == 0, out[-6000:]
