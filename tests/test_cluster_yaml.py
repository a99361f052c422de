"""cluster.yaml validates offline against Ray 2.60's autoscaler schema and keeps its promises:
Ray pinned, drivers on the head, GPU workers, shared results, nothing opened to the world,
token authentication on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from orchestrator.resources import DRIVER_RESOURCE

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_validates_with_the_autoscaler_schema(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)  # raises jsonschema.ValidationError on a violation
    assert prepared["head_node_type"] == "head.cpu"
    assert prepared["available_node_types"]["worker.gpu"]["max_workers"] == 4


def test_schema_check_is_live(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(config)
    broken["available_node_types"]["worker.gpu"]["min_wokers"] = 0  # typo'd key
    import jsonschema

    with pytest.raises(jsonschema.ValidationError, match="min_wokers"):
        validate_config(prepare_config(broken))


def test_pins_ray_and_installs_the_package_everywhere(config):
    setup = "\n".join(config["setup_commands"])
    assert '"ray[default,train,tune]==2.60.0"' in setup
    assert "pip install -e ~/scaling-orchestrator" in setup
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu" in setup
    assert config["file_mounts"]["~/scaling-orchestrator"] == "."
    assert "/mnt/results" in setup  # shared results folder on every node


def test_drivers_on_the_cpu_head_workers_on_gpus(config):
    nodes = config["available_node_types"]
    assert nodes["head.cpu"]["resources"] == {DRIVER_RESOURCE: 1}
    assert nodes["worker.gpu"]["node_config"]["InstanceType"].startswith(("g5.", "p4d."))


def test_nothing_is_open_to_the_world_and_auth_stays_on(config):
    text = json.dumps(config)  # the parsed config: the comments may name what to avoid
    assert "0.0.0.0" not in text
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "RAY_AUTH_MODE=token" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=disabled" not in text
    for node in config["available_node_types"].values():  # our group, not Ray's SSH-to-all one
        assert node["node_config"]["SecurityGroupIds"]
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
