"""serve_config.yaml is what `serve deploy` accepts and builds, checked offline (no Ray started).

Serve's own schema (``ray.serve.schema.ServeDeploySchema``) validates it, but ignores keys it
does not know: a misspelt ``max_ongoing_request`` would leave the default of 5 in place, and the
6th socket would hang. So every key is also checked against the schema's fields.

Then each application is built as Serve's controller builds it (import path → application
builder → ``build_app`` → ``override_deployment_info``), with Ray's private helpers: Ray is pinned
(pyproject.toml), and these are the functions `serve deploy` itself runs, so a deployment name,
import path or option combination Serve would refuse fails here first.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from ray._common.utils import import_attr
from ray._private.utils import update_envs
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.application_state import override_deployment_info
from ray.serve._private.build_app import build_app
from ray.serve._private.deployment_info import DeploymentInfo
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import (
    DeploymentSchema,
    HTTPOptionsSchema,
    RayActorOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from raychat.config import Settings, load_settings
from raychat.launcher import APP_NAME, PUSH_APP_NAME

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "serve_config.yaml"
ENV_EXAMPLE = REPO / "raychat.env.example"
REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)\}")


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(SERVE_CONFIG.read_text())


def app(config: dict, name: str) -> dict:
    (found,) = [a for a in config["applications"] if a["name"] == name]
    return found


def deployment(application: dict, name: str) -> dict:
    (found,) = [d for d in application["deployments"] if d["name"] == name]
    return found


def unknown_keys(config: dict) -> list[str]:
    """Every key Serve's schema has no field for (it would ignore them without a word)."""
    def extra(where: str, data: dict, model: type[BaseModel]) -> list[str]:
        return [f"{where}.{key}" for key in data if key not in model.model_fields]

    found = extra("", config, ServeDeploySchema) + extra("http_options", config.get("http_options", {}),
                                                         HTTPOptionsSchema)
    for a in config["applications"]:
        found += extra(a["name"], a, ServeApplicationSchema)
        for d in a.get("deployments", []):
            where = f"{a['name']}.{d['name']}"
            found += extra(where, d, DeploymentSchema)
            found += extra(f"{where}.autoscaling_config", d.get("autoscaling_config") or {}, AutoscalingConfig)
            found += extra(f"{where}.ray_actor_options", d.get("ray_actor_options") or {}, RayActorOptionsSchema)
    return found


# ---- the schema ----------------------------------------------------------------------------------

def test_passes_serve_deploy_schema(config):
    schema = ServeDeploySchema.model_validate(config)
    assert [a.name for a in schema.applications] == [APP_NAME, PUSH_APP_NAME]   # as `raychat up` names them


def test_every_key_is_one_serve_knows(config):
    assert unknown_keys(config) == []


def test_a_misspelt_option_would_be_caught(config):
    gateway = deployment(app(config, APP_NAME), "Gateway")
    gateway["max_ongoing_request"] = gateway.pop("max_ongoing_requests")
    ServeDeploySchema.model_validate(config)           # Serve itself takes it...
    assert unknown_keys(config) == [f"{APP_NAME}.Gateway.max_ongoing_request"]   # ...this does not


def test_request_timeout_is_never_set(config):
    assert "request_timeout_s" not in config["http_options"]
    for line in SERVE_CONFIG.read_text().splitlines():
        if "request_timeout_s" in line:
            assert line.lstrip().startswith("#") and "never" in line


# ---- the gateway -------------------------------------------------------------------------------

def test_gateway_autoscales_on_open_connections(config):
    gateway_app = app(config, APP_NAME)
    assert gateway_app["import_path"] == "serve_app:app" and gateway_app["route_prefix"] == "/"
    gateway = deployment(gateway_app, "Gateway")
    capacity = gateway["max_ongoing_requests"]
    scaling = gateway["autoscaling_config"]
    assert gateway["num_replicas"] == "auto"
    assert 2 <= scaling["min_replicas"] <= scaling["max_replicas"]
    assert 0 < scaling["target_ongoing_requests"] < capacity
    # When one of the minimum replicas goes, the others can take its sockets at once.
    assert scaling["target_ongoing_requests"] * scaling["min_replicas"] <= capacity * (scaling["min_replicas"] - 1)
    # Removing a replica cuts its sockets: scale down far more slowly than up.
    assert scaling["downscale_delay_s"] >= 10 * scaling["upscale_delay_s"]


def test_gateway_shuts_down_within_bounds_and_is_health_checked(config):
    gateway = deployment(app(config, APP_NAME), "Gateway")
    assert 0 < gateway["graceful_shutdown_wait_loop_s"] <= gateway["graceful_shutdown_timeout_s"] <= 30
    assert gateway["health_check_period_s"] < gateway["health_check_timeout_s"]
    # A reservation is what makes the cluster autoscaler add nodes for more replicas.
    assert gateway["ray_actor_options"]["num_cpus"] >= 1


# ---- both applications, built as Serve builds them ----------------------------------------------

@pytest.fixture
def cluster_env(monkeypatch, tmp_path):
    """The environment raychat.env gives `ray start` on a node (minimal, with a valid key)."""
    monkeypatch.setenv("RAYCHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAYCHAT_MONGODB_URI", "mongodb://db0,db1,db2/?replicaSet=rs0")
    monkeypatch.setenv("RAYCHAT_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("RAYCHAT_JWT_SECRET", "k" * 48)


def built(application: dict) -> dict[str, DeploymentInfo]:
    schema = ServeApplicationSchema.model_validate(application)
    target = call_user_app_builder_with_args_if_necessary(import_attr(schema.import_path), schema.args)
    deployments = build_app(target, name=schema.name).deployments
    infos = {d.name: DeploymentInfo(d._deployment_config, d._replica_config, 0, "test") for d in deployments}
    return override_deployment_info(infos, schema)


def test_the_gateway_application_builds_with_its_overrides(config, cluster_env):
    gateway = deployment(app(config, APP_NAME), "Gateway")
    infos = built(app(config, APP_NAME))
    assert list(infos) == ["Gateway"]
    deployed = infos["Gateway"].deployment_config
    assert deployed.num_replicas is None                     # autoscaled, not the code's fixed count
    assert deployed.max_ongoing_requests == gateway["max_ongoing_requests"]
    assert deployed.autoscaling_config.target_ongoing_requests == gateway["autoscaling_config"]["target_ongoing_requests"]
    assert deployed.autoscaling_config.min_replicas == gateway["autoscaling_config"]["min_replicas"]
    assert deployed.graceful_shutdown_timeout_s == gateway["graceful_shutdown_timeout_s"]
    assert infos["Gateway"].replica_config.ray_actor_options["num_cpus"] == gateway["ray_actor_options"]["num_cpus"]


def test_the_push_application_builds_with_its_overrides(config, cluster_env):
    push_app = app(config, PUSH_APP_NAME)
    assert push_app["route_prefix"] is None                 # it takes no HTTP requests
    infos = built(push_app)
    assert list(infos) == ["PushWorker"]
    assert infos["PushWorker"].deployment_config.num_replicas == deployment(push_app, "PushWorker")["num_replicas"]


# ---- settings --------------------------------------------------------------------------------

def env_vars(config: dict) -> dict[str, str]:
    return app(config, APP_NAME)["runtime_env"]["env_vars"]


def test_both_applications_run_with_the_same_settings(config):
    assert app(config, PUSH_APP_NAME)["runtime_env"] == app(config, APP_NAME)["runtime_env"]


def test_every_variable_is_a_raychat_setting(config):
    for name, value in env_vars(config).items():
        assert isinstance(value, str), name                  # runtime_env env_vars are strings
        assert name.startswith("RAYCHAT_") and name.removeprefix("RAYCHAT_").lower() in Settings.model_fields, name
    assert "RAYCHAT_HOSTS" in env_vars(config)


def references(config: dict) -> dict[str, str]:
    """{variable: the variable its value refers to} for every "${...}" value."""
    return {name: m.group(1) for name, value in env_vars(config).items() if (m := REFERENCE.search(value))}


def test_the_stores_and_secrets_are_references_to_the_same_name(config):
    refs = references(config)
    assert {"RAYCHAT_MONGODB_URI", "RAYCHAT_REDIS_URL", "RAYCHAT_JWT_SECRET", "RAYCHAT_S3_SECRET_KEY"} <= set(refs)
    for name, target in refs.items():
        assert env_vars(config)[name] == "${" + name + "}"


def test_raychat_env_example_documents_the_references(config):
    example = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    for name in references(config):
        assert name in example, f"{name} is referenced by serve_config.yaml but not in {ENV_EXAMPLE.name}"
    for name in example:
        assert name.startswith("RAY_") or name.removeprefix("RAYCHAT_").lower() in Settings.model_fields, name


def apply_runtime_env(monkeypatch, config: dict, node_env: dict[str, str]) -> None:
    """What a Ray worker does at start with the application's env_vars, on a node whose
    `ray start` ran with ``node_env`` (plus this process's environment, minus RAYCHAT_*)."""
    for name in list(Settings.model_fields):
        monkeypatch.delenv("RAYCHAT_" + name.upper(), raising=False)
    for name, value in node_env.items():
        monkeypatch.setenv(name, value)
    update_envs(copy.deepcopy(env_vars(config)))        # Ray's own expansion of "${NAME}"


def test_references_are_filled_in_from_the_nodes_environment(config, monkeypatch):
    node_env = {"RAYCHAT_MONGODB_URI": "mongodb://db0,db1,db2/?replicaSet=rs0&w=majority",
                "RAYCHAT_REDIS_URL": "redis://:pw@cache:6379/0", "RAYCHAT_JWT_SECRET": "s" * 40,
                "RAYCHAT_S3_ENDPOINT": "minio:9000", "RAYCHAT_S3_ACCESS_KEY": "ak",
                "RAYCHAT_S3_SECRET_KEY": "sk", "RAYCHAT_JWT_KEYS": "k2=" + "n" * 40}
    apply_runtime_env(monkeypatch, config, node_env)
    settings = load_settings()
    assert settings.mongodb_uri == node_env["RAYCHAT_MONGODB_URI"]
    assert settings.redis_url == node_env["RAYCHAT_REDIS_URL"]
    assert settings.jwt_secret == node_env["RAYCHAT_JWT_SECRET"]
    assert (settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key) == ("minio:9000", "ak", "sk")
    assert settings.jwt_keys == {"k2": "n" * 40}
    assert settings.hosts == int(env_vars(config)["RAYCHAT_HOSTS"])


def test_an_unset_reference_reads_as_unset(config, monkeypatch):
    apply_runtime_env(monkeypatch, config, {})
    settings = load_settings()                          # "" is a value every referenced setting takes...
    for name in references(config):
        field = name.removeprefix("RAYCHAT_").lower()
        assert not getattr(settings, field), field      # ...and reads as unset, as None would
