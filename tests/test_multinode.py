"""A multi-node run on one machine: ray.cluster_utils.Cluster, a head for the Tune drivers and
two nodes with one fake GPU each. Each trial launches a TorchTrainer (Ray Train V2) of one
worker x 1 GPU over gloo (CPU torch), so the two trials must land on different nodes.

Costs about 20 s of TorchTrainer start-up per trial on 2 cores (both run at once here).
"""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from ray_helpers import plan_of, two_node_cluster

from scaling_orchestrator.analysis.data.schema import check_table
from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.loop import TrainConfig
from scaling_orchestrator.orchestrator.execution.run import run_plan
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def gpu_trial(seed: int) -> TrialSpec:
    return TrialSpec(
        sweep="multinode", kind="scaling",
        shape=ModelShape(n_layer=1, d_model=32, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=2048, batch_tokens=512, eval_every_tokens=1024,
                          eval_tokens=1024, lr=1e-3, seed=seed),
        budget_flops=1e9,
        resources=Resources(num_workers=1, cpus_per_worker=1, gpus_per_worker=1))


@pytest.fixture(scope="module")
def cluster():
    # Train workers need 1 CPU + 1 GPU, so they can only go to the two (fake) GPU nodes.
    with two_node_cluster(num_cpus=1, num_gpus=1) as cluster_and_nodes:
        yield cluster_and_nodes


def test_trials_spread_over_gpu_nodes(cluster, tmp_path):
    _, nodes = cluster
    trials = [gpu_trial(seed) for seed in range(2)]
    summary = run_plan(plan_of(trials, max_failures=0), str(tmp_path), progress=False)
    assert sorted(summary.completed) == sorted(t.trial_id for t in trials)
    table = check_table(ds.dataset(str(tmp_path), format="parquet").to_table())
    assert sorted(zip(table["trial_id"].to_pylist(), table["step"].to_pylist())) == sorted(
        (t.trial_id, step) for t in trials for step in (2, 4))
    store = Store(str(tmp_path))
    ran_on = {store.read_meta(t.trial_id)["node_id"] for t in trials}
    assert ran_on == {node.node_id for node in nodes}  # one trial per GPU node
