"""cluster.yaml validates offline against Ray 2.60's autoscaler schema and keeps its promises:
Ray pinned, drivers on the head, GPU workers, shared results, nothing opened to the world,
token authentication on."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from scaling_orchestrator.orchestrator.plan.resources import DRIVER_RESOURCE
from scaling_orchestrator.orchestrator.spec.paths import corpus_file, storage_file

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


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
    assert f"{shared_mount(config)}/results" in setup  # shared results folder on every node


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


def shared_mount(config) -> str:
    """Where setup_commands mount the shared EFS on every node."""
    [mount] = re.findall(r"mount -t nfs4 .*?:/ (\S+?)\)", " ".join(config["setup_commands"]))
    return mount


def example_paths(raw: dict) -> dict:
    """The absolute paths an example names: corpus, token cache, storage."""
    data = raw.get("data", {})
    named = {"data.corpus": corpus_file(data.get("corpus", "sotu")),
             "data.cache_dir": data.get("cache_dir", ""), "storage": storage_file(raw.get("storage", ""))}
    return {field: path for field, path in named.items() if path.startswith("/")}


def test_every_example_uses_the_storage_the_cluster_shares(config):
    """Rows, corpus and cache of a cluster example lie on the mount every node has: a worker's
    rows written anywhere else would stay on its own disk."""
    mount = shared_mount(config)
    assert mount == "/mnt/cluster_storage"
    assert "mkdir -p /mnt/cluster_storage/data /mnt/cluster_storage/cache /mnt/cluster_storage/results" in \
        " ".join(config["setup_commands"])
    seen = {}
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        for field, path in example_paths(yaml.safe_load(example.read_text())).items():
            assert path.startswith(mount + "/"), f"{example.name}: {field} {path} is not under {mount}"
            seen[f"{example.name}:{field}"] = path
    assert seen["gpu-cluster.yaml:data.corpus"] == "/mnt/cluster_storage/data/fineweb-edu-sample.parquet"
    assert seen["gpu-cluster.yaml:data.cache_dir"] == "/mnt/cluster_storage/cache"
    assert seen["gpu-cluster.yaml:storage"].startswith("/mnt/cluster_storage/results/")
    # the commands in cluster.yaml's header name the same places
    header = CLUSTER_YAML.read_text().split("cluster_name:")[0]
    assert "/mnt/results" not in header and "/mnt/cluster_storage/data/" in header


def test_what_the_autoscaler_may_launch_is_read_from_the_bootstrap_config(config, tmp_path):
    """`ray up` leaves cluster.yaml on the head with each type's resources filled in from its
    instance type (g5.2xlarge: 8 CPUs, 1 GPU); the driver sizes the study from it, as no GCS
    cluster config exists for a v1 monitor. The head counts once, each worker type max_workers times."""
    from scaling_orchestrator.orchestrator.plan.autoscaling import launchable

    prepared = copy.deepcopy(config)
    prepared["available_node_types"]["head.cpu"]["resources"] = {"CPU": 8, DRIVER_RESOURCE: 1}
    prepared["available_node_types"]["worker.gpu"]["resources"] = {"CPU": 8, "GPU": 1}
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(prepared))
    most, shapes = launchable(str(path))
    assert most == {"CPU": 40.0, DRIVER_RESOURCE: 1.0, "GPU": 4.0}
    assert shapes == [{"CPU": 8.0, DRIVER_RESOURCE: 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    prepared["max_workers"] = 2  # the cluster-wide cap binds before the type's own 4
    path.write_text(yaml.safe_dump(prepared))
    assert launchable(str(path))[0]["GPU"] == 2.0
    assert launchable(str(tmp_path / "absent.yaml")) is None  # a laptop, a local Ray
