"""cluster.yaml passes the checks `ray up` makes before it touches AWS, offline.

`ray up` runs ``prepare_config`` (merge the provider's defaults) then ``validate_config``
(Ray's ray-schema.json plus the cross-field rules); both are used here as Ray uses them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def check(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation(config):
    prepared = check(config)
    assert prepared["cluster_name"] == "raychat"
    assert prepared["provider"]["type"] == "aws"


def test_a_bogus_top_level_key_is_rejected(config):
    config["bogus_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        check(config)


def test_a_wrongly_typed_field_is_rejected(config):
    config["available_node_types"]["worker"]["min_workers"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        check(config)


def test_head_and_worker_types_declare_resources_and_bounds(config):
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    workers = [name for name in nodes if name != config["head_node_type"]]
    assert workers
    for name, node in nodes.items():
        assert node["resources"], name
    for name in workers:
        assert 0 <= nodes[name]["min_workers"] <= nodes[name]["max_workers"] <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0


def test_every_node_installs_raychat_and_starts_ray(config):
    assert any("pip install" in cmd and "raychat" in cmd for cmd in config["setup_commands"])
    assert any("ray start --head" in cmd for cmd in config["head_start_ray_commands"])
    assert any("ray start --address" in cmd for cmd in config["worker_start_ray_commands"])


def test_serve_deploy_is_documented_without_a_request_timeout():
    text = CLUSTER_YAML.read_text()
    assert "serve deploy" in text
    # The only mention of request_timeout_s may be the warning never to set it.
    for line in text.splitlines():
        if "request_timeout_s" in line:
            assert "never set" in line
