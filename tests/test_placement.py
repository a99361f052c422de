"""Placing trials: resources by size, micro-batches that fit a worker's memory, cluster cost."""

import dataclasses

import pytest

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.memory import estimate_memory
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.plan.placement import (
    GB,
    MEMORY_MARGIN,
    cluster_cost,
    declared_gpus,
    device_micro_batch_tokens,
    place_trials,
    scaled_trial_seconds,
    trial_memory,
)
from scaling_orchestrator.orchestrator.plan.resources import max_concurrent
from scaling_orchestrator.orchestrator.spec.sections.resources import parse_resources, resources_for
from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError

# The GPU example's dial: d_model = 64 * depth, heads of 64, vocab 32768, seq 1024, bf16.
GPU_SHAPES = {
    depth: ModelShape.from_depth(depth, vocab_size=32768, seq_len=1024, aspect_ratio=64, head_dim=64)
    for depth in (4, 18, 24)
}
GPU_RULES = {
    "num_workers": 2,
    "cpus_per_worker": 4,
    "gpus_per_worker": 1,
    "memory_per_worker_gb": 24,
    "by_size": [{"min_params": 3e8, "num_workers": 4}, {"min_params": 7e8, "memory_per_worker_gb": 80}],
}


def _trial(depth: int, micro_batch_tokens: int = 65536, resources: Resources = Resources()) -> TrialSpec:
    config = TrainConfig(
        total_tokens=524288 * 10,
        batch_tokens=524288,
        micro_batch_tokens=micro_batch_tokens,
        dtype="bfloat16",
        device="cuda",
    )
    return TrialSpec(
        sweep="gpu",
        kind="scaling",
        shape=GPU_SHAPES[depth],
        data=DataSpec(),
        train=config,
        budget_flops=1e18,
        resources=resources,
        size_label=f"d{depth}",
    )


def _place(trials, raw=GPU_RULES):
    return place_trials(None, trials, parse_resources(raw))


def test_rules_cascade_by_total_params():
    rules = parse_resources(GPU_RULES)
    small, mid, large = (resources_for(rules, GPU_SHAPES[d]) for d in (4, 18, 24))
    assert GPU_SHAPES[18].param_counts()["total"] > 3e8 > GPU_SHAPES[4].param_counts()["total"]
    assert (small.num_workers, small.memory_per_worker_gb) == (2, 24)
    assert (mid.num_workers, mid.memory_per_worker_gb) == (4, 24)
    assert (large.num_workers, large.memory_per_worker_gb, large.cpus_per_worker) == (4, 80, 4)  # both rules


def test_custom_resources_merge_key_by_key():
    rules = parse_resources(
        {
            "num_workers": 1,
            "resources_per_worker": {"efa": 1},
            "by_size": [{"min_params": 1e8, "resources_per_worker": {"big_gpu": 1}}],
        }
    )
    assert resources_for(rules, GPU_SHAPES[4]).resources_per_worker == {"efa": 1}
    assert resources_for(rules, GPU_SHAPES[24]).resources_per_worker == {"efa": 1, "big_gpu": 1}
    assert rules.base.resources_per_worker == {"efa": 1}  # the base is left as it was


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"by_size": [{"num_workers": 2}]}, "resources.by_size[0].min_params: missing"),
        (
            {"by_size": [{"min_params": 1e9, "num_workers": 2}, {"min_params": 1e8, "num_workers": 4}]},
            "resources.by_size[1].min_params: 1e+08 must be larger than the rule before it",
        ),
        ({"by_size": [{"min_params": 1e9}]}, "resources.by_size[0]: no field to change"),
        ({"by_size": [{"min_params": 1e9, "gpus": 1}]}, "resources.by_size[0].gpus: unknown key"),
        (
            {"by_size": [{"min_params": 1e9, "gpus_per_worker": 1}]},
            "resources.by_size[0].gpus_per_worker: 1 must be 0 when num_workers is 0",
        ),
        ({"by_size": {"min_params": 1e9}}, "resources.by_size: {'min_params': 1000000000.0} must be a list"),
        ({"memory_per_worker_gb": -1}, "resources.memory_per_worker_gb: -1 must be a number >= 0"),
    ],
)
def test_bad_rules_are_one_line_naming_the_field(raw, message):
    with pytest.raises(
        SpecError, match="^" + message.replace("[", r"\[").replace("(", r"\(").replace("+", r"\+")
    ):
        parse_resources(raw)


def test_micro_batch_shrinks_to_fit_and_keeps_batch_tokens():
    placed, notes = _place([_trial(4), _trial(24)])
    for trial, workers, memory_gb in zip(placed, (2, 4), (24, 80)):
        rows = 512 // workers  # sequences per worker per step
        micro_rows = trial.train.micro_batch_tokens // 1024
        assert trial.resources.num_workers == workers and rows % micro_rows == 0
        assert trial.train.batch_tokens == 524288 and trial.train.total_tokens == 524288 * 10
        fits = [
            estimate_memory(
                trial.shape, n * 1024, "bfloat16", accumulating=True, world_size=workers
            ).total_bytes
            <= (1 - MEMORY_MARGIN) * memory_gb * GB
            for n in (micro_rows, 2 * micro_rows)
        ]
        assert fits == [True, False]  # the largest that fits
        assert trial_memory(trial) == {
            "memory_bytes": estimate_memory(
                trial.shape, micro_rows * 1024, "bfloat16", accumulating=True, world_size=workers
            ).total_bytes,
            "micro_batch_tokens": micro_rows * 1024,
        }
    # d4 on 24 GB: 64 sequences' logits alone are 64 x 1024 x 32768 x 14 B = 30 GB
    assert [t.train.micro_batch_tokens // 1024 for t in placed] == [32, 16]
    assert notes == [
        "resources.by_size[1]: d24 take 4 workers x 1 GPU, 4 CPU each",
        "micro-batches cut to fit each worker's memory less 10%, in sequences per forward (gradients "
        "accumulate to the same batch_tokens): d4 32 of 256 (24 GB); d24 16 of 128 (80 GB)",
    ]


def test_a_size_that_cannot_fit_one_sequence_is_refused_by_name():
    raw = {"num_workers": 1, "gpus_per_worker": 1, "memory_per_worker_gb": 12}
    with pytest.raises(
        SpecError,
        match=r"^resources.memory_per_worker_gb: 12 GB cannot hold size d24 \(732M params\) "
        r"training one sequence of 1024 tokens: it needs [\d,]+ bytes",
    ):
        _place([_trial(24)], raw)


def test_undeclared_memory_leaves_the_spec_micro_batch():
    placed, notes = _place([_trial(24)], {"num_workers": 2, "gpus_per_worker": 1})
    assert placed[0].train.micro_batch_tokens == 65536 and notes == []
    assert trial_memory(placed[0])["memory_bytes"] > 100 * GB  # what that micro-batch would need


def test_a_worker_fits_the_micro_batch_to_its_own_device():
    trial = _trial(
        24, resources=Resources(num_workers=2, cpus_per_worker=4, gpus_per_worker=1)
    )  # none declared
    assert (
        device_micro_batch_tokens(trial, 24 * 10**9) == 2 * 1024
    )  # an A10G: 2 of 256 sequences (module doc)
    assert device_micro_batch_tokens(trial, 141 * 10**9) == 32 * 1024  # an H200: 75 GB at 32, 134 GB at 64
    with pytest.raises(SpecError, match="cannot hold size d24"):
        device_micro_batch_tokens(trial, 16 * 10**9)


def test_the_spec_resources_apply_without_rules():
    sweep = parse_sweep(
        {
            "name": "s",
            "budgets_flops": [1e12],
            "sizes_per_budget": 3,
            "model": {"depth": {"min": 1, "max": 4}, "seq_len": 64},
            "data": {"corpus": "pydoc", "tokenizer": "byte"},
            "train": {"batch_tokens": 1024},
            "resources": {"num_workers": 2, "gpus_per_worker": 1},
            "max_concurrent_trials": 8,
        }
    )
    placed, notes = place_trials(sweep, [_trial(4)])
    assert placed[0].resources == sweep.resources and notes == []
    assert declared_gpus(sweep) == 16  # 8 trials at a time x 2 GPUs


def test_a_fitting_micro_batch_keeps_the_trial_id():
    trial = _trial(4, micro_batch_tokens=8192, resources=Resources(num_workers=2, gpus_per_worker=1))
    placed, _ = _place([trial])
    assert placed[0].trial_id == trial.trial_id  # resources are not in the id; the micro-batch did not move


def test_workers_must_split_the_batch():
    raw = {"num_workers": 3, "gpus_per_worker": 1, "memory_per_worker_gb": 80}
    with pytest.raises(SpecError, match="resources.num_workers: 3 workers for size d4 must split"):
        _place([_trial(4)], raw)


def test_cluster_cost_gpu_hours_and_makespan():
    trials = [_trial(4, resources=Resources(num_workers=n, gpus_per_worker=1)) for n in (1, 1, 1)]
    seconds = dict(zip(map(id, trials), (10.0, 6.0, 4.0)))
    cost = cluster_cost(trials, lambda t: seconds[id(t)], 2)
    assert cost["gpu_hours"] == pytest.approx(20 / 3600) and cost["makespan_seconds"] == 10.0
    # a 2-GPU trial of 10 s and 1-GPU trials of 6, 4, 4 on 2 GPUs: 10, then 6 || 4 + 4 -> 18 s
    wide = [_trial(4, resources=Resources(num_workers=n, gpus_per_worker=1)) for n in (2, 1, 1, 1)]
    seconds = dict(zip(map(id, wide), (10.0, 6.0, 4.0, 4.0)))
    cost = cluster_cost(wide, lambda t: seconds[id(t)], 2)
    assert cost["makespan_seconds"] == 18.0 and cost["utilisation"] == pytest.approx(34 / 36)
    too_few = cluster_cost(wide, lambda t: 1.0, 1)  # a 2-GPU trial on 1 GPU: no makespan
    assert too_few["makespan_seconds"] is None and too_few["gpu_hours"] == pytest.approx(5 / 3600)
    assert cluster_cost([_trial(4)], lambda t: 5.0, 0)["makespan_seconds"] is None  # CPU trials


def test_more_gpus_run_a_trial_faster():
    base = Resources(num_workers=2, gpus_per_worker=1)
    trial = _trial(4, resources=dataclasses.replace(base, num_workers=4))
    assert scaled_trial_seconds(1e15, 30.0, base, trial) == pytest.approx(trial.flops / 2e15 + 30.0)


def test_max_concurrent_counts_the_largest_trials_together():
    gpus = lambda n: Resources(num_workers=n, gpus_per_worker=1, cpus_per_worker=1)  # noqa: E731
    mixed = [gpus(4), gpus(4), gpus(2)] + [gpus(1)] * 10
    assert max_concurrent(mixed, {"CPU": 64.0, "GPU": 16.0}) == 9  # 4 + 4 + 2 + 6 x 1 = 16
    assert max_concurrent([gpus(2)], {"CPU": 64.0, "GPU": 16.0}) == 8  # one kind: 16 // 2, as before
    assert max_concurrent([gpus(4)] * 2, {"CPU": 64.0, "GPU": 16.0}) == 4
