"""What an autoscaling cluster may launch, read from the config `ray up` leaves on the head node.

run_plan refuses, before Tune starts, a trial the cluster can never place (resources.check_fits),
so it needs the most the cluster can hold, not what runs now: cluster.yaml starts with no GPU
node (worker.gpu min_workers 0). Ray 2.60 reports that figure through the GCS
(state.get_cluster_config) only where a platform publishes a cluster config; the v1 monitor that
`ray up` starts publishes none, and a GPU study would be refused on a cluster of 0 GPUs (seen in
tests/test_ray_up.py). `ray up` writes the prepared config, each node type's resources filled in
from its instance type, to ~/ray_bootstrap_config.yaml on the head, where `ray job submit` runs
the driver and the monitor reads it (cluster.yaml's head_start_ray_commands); Ray Tune takes the
same file as the sign of an autoscaling cluster (ray.tune.execution.cluster_info).
"""

from __future__ import annotations

import os

import yaml

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def launchable(path: str = BOOTSTRAP_CONFIG) -> tuple[dict, list[dict]] | None:
    """(the most of each resource the cluster may hold, each node type's resources), or None
    without a readable config. The head counts once, each worker type max_workers times, capped by
    the cluster's max_workers: head {CPU: 8, driver: 1} + 4 x worker.gpu {CPU: 8, GPU: 1}
    -> {CPU: 40, driver: 1, GPU: 4}."""
    try:
        with open(os.path.expanduser(path)) as f:
            config = yaml.safe_load(f)
        types = config["available_node_types"]
        head_type = config["head_node_type"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    cap = config.get("max_workers")
    most: dict[str, float] = {}
    shapes = []
    for name, node_type in types.items():
        resources = {k: float(v) for k, v in (node_type.get("resources") or {}).items()}
        count = 1 if name == head_type else node_type.get("max_workers", cap or 0)
        count = min(count, cap) if cap is not None and name != head_type else count
        if count > 0 and resources:
            shapes.append(resources)
        for key, value in resources.items():
            most[key] = most.get(key, 0.0) + value * count
    return most, shapes
