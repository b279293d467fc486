"""cluster.yaml (AWS) and cluster-local.yaml (own machines) pass the checks `ray up` makes, offline.

`ray up` runs ``prepare_config`` (merge the provider's defaults; for `local`, build its single
node type from the machine list) then ``validate_config`` (Ray's ray-schema.json plus the
cross-field rules); both are used here as Ray uses them. The start commands are shell, so the
tests run them in bash, with stand-ins for `ray` and `serve` that record how they were called.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
AWS = REPO / "cluster.yaml"
LOCAL = REPO / "cluster-local.yaml"
ENV_FILE = "raychat.env"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def check(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def remote_path(config: dict, local: str) -> str:
    """Where file_mounts puts ``local`` (a path relative to the repo root) on every node."""
    remotes = [remote for remote, source in config["file_mounts"].items() if source == local]
    assert len(remotes) == 1, f"file_mounts copies {local!r} to one place: {config['file_mounts']}"
    return remotes[0]


@pytest.fixture(params=[AWS, LOCAL], ids=["aws", "local"])
def config(request) -> dict:
    return load(request.param)


# ---- Ray's own validation ----------------------------------------------------------------------

def test_passes_rays_validation(config):
    prepared = check(config)
    assert prepared["cluster_name"].startswith("raychat")


def test_a_bogus_top_level_key_is_rejected(config):
    config["bogus_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        check(config)


def test_a_wrongly_typed_field_is_rejected(config):
    config["idle_timeout_minutes"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        check(config)


# ---- nodes ------------------------------------------------------------------------------------

def test_aws_node_types_declare_resources_and_bounds():
    config = load(AWS)
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    head = config["head_node_type"]
    assert head in nodes
    workers = [name for name in nodes if name != head]
    assert workers
    for name, node in nodes.items():
        assert "CPU" in node["resources"], name
    # The head reserves no CPU: gateway replicas (1 CPU each in serve_config.yaml) go to workers.
    assert nodes[head]["resources"]["CPU"] == 0
    for name in workers:
        assert nodes[name]["resources"]["CPU"] >= 1
        assert 1 <= nodes[name]["min_workers"] <= nodes[name]["max_workers"] <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0


def test_local_cluster_keeps_every_listed_machine():
    config = load(LOCAL)
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] not in config["provider"]["worker_ips"]
    assert config["auth"]["ssh_user"] and config["auth"]["ssh_private_key"]
    # Ray refuses node types for on-prem clusters and builds one from the machine list.
    assert "available_node_types" not in config
    prepared = check(config)
    (node,) = prepared["available_node_types"].values()
    machines = len(config["provider"]["worker_ips"])
    assert node["min_workers"] == node["max_workers"] == prepared["max_workers"] == machines
    assert config["idle_timeout_minutes"] > 0


# ---- what runs on the nodes -------------------------------------------------------------------

def test_setup_installs_raychat_from_the_synced_checkout(config):
    checkout = remote_path(config, ".")
    installs = [cmd for cmd in config["setup_commands"] if re.search(r"\bpip install\b", cmd)]
    assert installs and all(cmd.rstrip().endswith(checkout) for cmd in installs), installs
    # The checkout is copied without what git ignores: raychat.env goes by its own mount only.
    assert ".gitignore" in config["rsync_filter"]
    assert ENV_FILE in (REPO / ".gitignore").read_text().split()


def test_aws_nodes_run_python_3_11_and_this_ray():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [m.group(1) for dep in pyproject["project"]["dependencies"]
            if (m := re.fullmatch(r"ray(?:\[[a-z,]+\])?==(\S+)", dep.replace(" ", "")))]
    assert pins == [ray.__version__]
    assert load(AWS)["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-cpu"


def test_local_nodes_install_into_a_python_3_11_venv():
    setup = " && ".join(load(LOCAL)["setup_commands"])
    assert "python3.11 -m venv ~/raychat-venv" in setup
    assert "~/raychat-venv/bin/pip install" in setup
    # `ray down` runs a bare `ray stop` on the head: the venv's bin/ must be on PATH there.
    assert 'export PATH="$HOME/raychat-venv/bin:$PATH"' in setup and ".bashrc" in setup


@pytest.fixture
def node(tmp_path):
    """A stand-in node: fake `ray` and `serve` on PATH that log each call's arguments and two
    variables of their environment, and a way to run a start command with raychat.env at a temp path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("ray", "serve"):
        stub = bin_dir / name
        stub.write_text(
            "#!/usr/bin/env bash\n"
            # One line per call: the arguments joined by ";", then what it found in its environment.
            f'(IFS=";"; printf "%s|%s|%s\\n" "$(basename "$0");$*" "${{RAY_REDIS_ADDRESS-<unset>}}" '
            f'"${{RAYCHAT_JWT_SECRET-<unset>}}") >> {log}\n'
            # `serve deploy` fails as many times as the file `fail` says, then succeeds.
            f'if [ "$(basename "$0")" = serve ] && [ -s {tmp_path}/fail ]; then\n'
            f'  n=$(cat {tmp_path}/fail); echo $((n - 1)) > {tmp_path}/fail; [ "$n" -le 0 ] || exit 1\n'
            "fi\n")
        stub.chmod(0o755)

    def run(config: dict, command: str, env_text: str, *, failing_deploys: int = 0):
        env_path = tmp_path / ENV_FILE
        env_path.write_text(env_text)
        (tmp_path / "fail").write_text(str(failing_deploys) if failing_deploys else "")
        command = command.replace(remote_path(config, ENV_FILE), str(env_path))
        # ulimit and sleep are stubbed: this sandbox's hard limit is not a node's, and no waiting.
        script = f"ulimit() {{ :; }}; sleep() {{ :; }}; ({command})"
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "RAY_HEAD_IP": "10.0.0.10"}
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
        calls = [line.split("|") for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return done.returncode, calls

    return run


def start_command(config: dict, key: str) -> str:
    (command,) = [c for c in config[key] if "ray start" in c]
    assert config[key][0] == "ray stop"     # a second `ray up` restarts Ray cleanly
    return command


def test_head_starts_ray_without_gcs_fault_tolerance_by_default(config, node):
    code, calls = node(config, start_command(config, "head_start_ray_commands"),
                       "RAYCHAT_JWT_SECRET='s3cret'\nRAY_REDIS_ADDRESS=\n")
    assert code == 0
    ((args, redis, jwt),) = calls
    assert args.startswith("ray;start;--head;--port=6379;")
    assert "--redis-password" not in args and "--redis-username" not in args
    assert redis == "<unset>"        # an empty RAY_REDIS_ADDRESS would make Ray look for Redis at ""
    assert jwt == "s3cret"           # raychat.env reaches Ray's processes through `ray start`


def test_head_keeps_gcs_state_in_the_external_redis_of_raychat_env(config, node):
    code, calls = node(config, start_command(config, "head_start_ray_commands"),
                       "RAY_REDIS_ADDRESS='gcs-redis:6379'\nRAY_REDIS_PASSWORD='p a$s'\n"
                       "RAY_REDIS_USERNAME='ray'\n")
    assert code == 0
    ((args, redis, _),) = calls
    assert redis == "gcs-redis:6379"  # `ray start --head` reads the address from its environment
    assert args.split(";")[-2:] == ["--redis-username=ray", "--redis-password=p a$s"]


def test_a_broken_env_file_stops_the_start(config, node):
    code, calls = node(config, start_command(config, "head_start_ray_commands"), "RAYCHAT_HOSTS='4\n")
    assert code != 0 and calls == []


def test_workers_join_the_head_with_raychat_env(config, node):
    code, calls = node(config, start_command(config, "worker_start_ray_commands"), "RAYCHAT_JWT_SECRET=k\n")
    assert code == 0
    ((args, _, jwt),) = calls
    assert args.startswith("ray;start;--address=10.0.0.10:6379;")
    assert jwt == "k"


def deploy_command(config: dict) -> str:
    (command,) = [c for c in config["head_start_ray_commands"] if "serve deploy" in c]
    assert config["head_start_ray_commands"][-1] == command      # after Ray has started
    return command


def test_head_deploys_the_checkouts_serve_config(config):
    deployed = re.search(r"serve deploy ([^\s;]+)", deploy_command(config)).group(1)
    assert deployed == remote_path(config, ".") + "/serve_config.yaml"
    assert (REPO / "serve_config.yaml").is_file()


def test_serve_deploy_is_retried_until_the_dashboard_answers(config, node):
    code, calls = node(config, deploy_command(config), "", failing_deploys=2)
    assert code == 0
    assert [args for args, _, _ in calls] == [calls[0][0]] * 3


def test_ray_up_fails_when_serve_deploy_never_succeeds(config, node):
    code, calls = node(config, deploy_command(config), "", failing_deploys=1000)
    assert code != 0
    assert 5 <= len(calls) <= 60


def test_clients_can_reach_the_serve_port():
    rules = load(AWS)["provider"]["security_group"]["IpPermissions"]
    port = load(REPO / "serve_config.yaml")["http_options"]["port"]
    assert any(rule["FromPort"] <= port <= rule["ToPort"] for rule in rules)
