"""Hosts follow the cluster: a node joins and another leaves under traffic, and every client
ends with the gap-free sequence (the scenario and its checks: tests/faults/elastic_scenario.py).

It needs a Ray cluster of its own (``ray.cluster_utils.Cluster``), so it runs in a child
process with its own RAY_TMPDIR, whatever Ray this pytest process has started; afterwards
the processes of that cluster, and only they, are ended by pid (tests/faults/procs.py).
"""

from __future__ import annotations

import pytest

from tests.faults.procs import ray_tmpdir, run_scenario

pytestmark = pytest.mark.e2e


def test_keys_move_to_new_owners_without_loss_when_nodes_join_and_leave(mongo_server, redis_server):
    tmp = ray_tmpdir("rc-elastic-")
    code, out = run_scenario("tests.faults.elastic_scenario",
                             ["--mongodb-uri", mongo_server.uri, "--redis-url", redis_server.uri], tmp,
                             timeout_s=240)
    print(out[-6000:])
    assert code == 0, out[-6000:]
