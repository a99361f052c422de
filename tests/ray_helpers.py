"""Shared by the Ray tests: a head-plus-two-nodes cluster and the rows of a results folder."""

from __future__ import annotations

import contextlib
import os

import pyarrow.dataset as ds

from analysis.schema import check_table
from orchestrator.resources import DRIVER_RESOURCE
from orchestrator.run import QUIET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def two_node_cluster(**node_args):
    """A head that hosts only the drivers (custom resource "driver", as in cluster.yaml) and two
    worker nodes built with node_args; yields (cluster, nodes) with the driver connected."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {DRIVER_RESOURCE: 1}, "include_dashboard": False})
    nodes = [cluster.add_node(**node_args) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": ROOT}}, **QUIET)
    try:
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


def rows_by_trial(results) -> dict[str, list[dict]]:
    """Every row of a results folder, schema-checked, grouped by trial and sorted by step."""
    table = check_table(ds.dataset(str(results), format="parquet").to_table())
    out: dict[str, list[dict]] = {}
    for row in sorted(table.to_pylist(), key=lambda r: (r["trial_id"], r["step"])):
        out.setdefault(row["trial_id"], []).append(row)
    return out
