"""Shared by the Ray tests: a head-plus-two-nodes cluster, a Plan around hand-built trials and
the rows of a results folder."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import pyarrow.dataset as ds

from scaling_orchestrator.analysis.data.schema import check_table
from scaling_orchestrator.orchestrator.execution.tuner import QUIET
from scaling_orchestrator.orchestrator.plan.build import Plan
from scaling_orchestrator.orchestrator.plan.resources import DRIVER_RESOURCE
from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep

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


# Any valid spec: plan_of keeps only its run settings.
RUN_SETTINGS_SPEC = {"name": "x", "budgets_flops": [1e11], "sizes_per_budget": 3,
                     "model": {"depth": {"min": 1, "max": 3}, "aspect_ratio": 16, "head_dim": 16,
                               "seq_len": 32},
                     "train": {"batch_tokens": 512}}


def plan_of(trials, *, max_failures: int = 2, max_concurrent_trials: int | None = None) -> Plan:
    """A Plan of hand-built trials (fixed step counts, custom resources, injected faults) that
    no spec would plan; run_plan reads only the trials and these run settings from it."""
    sweep = dataclasses.replace(parse_sweep(RUN_SETTINGS_SPEC), name=trials[0].sweep,
                                max_failures=max_failures,
                                max_concurrent_trials=max_concurrent_trials)
    return Plan(sweep, tuple(trials))


def rows_by_trial(results) -> dict[str, list[dict]]:
    """Every row of a results folder, schema-checked, grouped by trial and sorted by step."""
    table = check_table(ds.dataset(str(results), format="parquet").to_table())
    out: dict[str, list[dict]] = {}
    for row in sorted(table.to_pylist(), key=lambda r: (r["trial_id"], r["step"])):
        out.setdefault(row["trial_id"], []).append(row)
    return out
