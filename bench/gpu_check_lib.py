"""The parts of bench/gpu_check.py that are not one training run: the peak FLOP/s table, the
micro-batch searches (by trying, by the planner, by the memory model alone), and the Tune study
through `scaling run` whose trials run on TorchTrainer worker groups.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import yaml

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.memory import estimate_memory
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.plan.placement import MEMORY_MARGIN, device_micro_batch_tokens
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec

# Dense (no 2:4 sparsity) bf16 tensor-core peaks from the vendors' datasheets, in FLOP/s, keyed by a
# substring of torch.cuda.get_device_name() and matched in this order (the more specific first:
# "H100 PCIe" before "H100", "L40S" before "L40" before "L4", "A10G" before "A10"). The SXM H100
# reports itself as "NVIDIA H100 80GB HBM3"; an H200 (and a GH200) as "...H200".
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM5
    ("H200", 989e12),  # the H100's compute, more and faster memory
    ("A100", 312e12),
    ("A10G", 125e12),  # the A10's datasheet figure; AWS's A10G may clock lower
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
)
# A CPU has no table entry: the smoke run divides by this nominal figure, stated as such on its
# line: the 2-core AMD EPYC it was written on, 2 cores x 2 FMA units x 8 fp32 lanes (AVX2) x 2
# FLOPs x 2.45 GHz = 1.57e11 (DESIGN.md: a bare training step ran at 1.5e11-1.75e11 in exact
# FLOPs, which count the embedding lookup as a matmul).
CPU_NOMINAL_FLOPS = 1.57e11


def peak_flops(device_name: str) -> tuple[float | None, str]:
    """(dense bf16 FLOP/s, the table key that matched) for a device name; (None, "") if unknown."""
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops, key
    return None, ""


def largest_fitting(fits: Callable[[int], bool], cap: int, resolution: int = 16) -> tuple[int, list[str]]:
    """The most rows (up to cap) that fits() accepts, found by trying: 1, 2, 4, ... until a try
    fails, then bisect between the last fit and the first failure until the gap is at most
    1/resolution of the fit. Returns (rows, the tries: "32" a fit, "64x" a failure); 0 when one
    row does not fit. Up to 40 fit, cap 256: 1 2 4 8 16 32 64x 48x 40 44x 42x -> 40."""
    tries: list[str] = []

    def attempt(rows: int) -> bool:
        ok = fits(rows)
        tries.append(f"{rows}" if ok else f"{rows}x")
        return ok

    good, bad, rows = 0, None, 1
    while bad is None and rows <= cap:
        if attempt(rows):
            good, rows = rows, rows * 2
        else:
            bad = rows
    if bad is None and good < cap:  # the doubling stepped over cap without a failure
        good, bad = (cap, None) if attempt(cap) else (good, cap)
    while bad is not None and good and bad - good > max(1, good // resolution):
        mid = (good + bad) // 2
        good, bad = (mid, bad) if attempt(mid) else (good, mid)
    return good, tries


def planner_rows(shape: ModelShape, dtype: str, batch_rows: int, device_bytes: int, gpu: bool) -> int:
    """Sequences per forward the planner gives one worker of a batch_rows batch on a device of
    device_bytes (orchestrator/plan/placement.py: the largest divisor of the rows whose
    estimate fits in 90% of it)."""
    batch = batch_rows * shape.seq_len
    trial = TrialSpec(
        sweep="gpu-check",
        kind="scaling",
        shape=shape,
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=batch, batch_tokens=batch, dtype=dtype),
        budget_flops=1.0,
        resources=Resources(num_workers=1, gpus_per_worker=1.0 if gpu else 0.0),
    )
    return (device_micro_batch_tokens(trial, device_bytes) or batch) // shape.seq_len


def model_rows(shape: ModelShape, dtype: str, cap: int, device_bytes: int, device: str) -> int:
    """The most sequences (up to cap) whose memory-model estimate is within device_bytes, with no
    margin and no accumulation: what the tries of largest_fitting should find if the model is right."""
    fitting = [
        rows
        for rows in range(1, cap + 1)
        if estimate_memory(shape, rows * shape.seq_len, dtype, device=device).total_bytes <= device_bytes
    ]
    return max(fitting, default=0)


@dataclasses.dataclass(frozen=True)
class StudySetup:
    """The Tune study: four shapes at one budget in bf16, four trials at a time."""

    shapes: tuple[tuple[int, int, int], ...]  # (n_layer, d_model, n_head)
    seq_len: int
    batch_tokens: int
    budget_flops: float  # every shape gets >= 25 steps (train.min_steps): all four are planned
    device: str
    compile: bool
    resources: dict  # per trial: a worker with a fraction of the GPU, or (smoke) part of a CPU


def study_spec(setup: StudySetup) -> dict:
    """The study's sweep spec. In-process trials (num_workers 0, the smoke run) cannot hold a GPU;
    there the largest size takes the worker-group path instead, through a by_size rule."""
    resources = dict(setup.resources)
    if not resources.get("num_workers"):
        largest = max(
            ModelShape(n_layer=n, d_model=d, n_head=h, seq_len=setup.seq_len).param_counts()["total"]
            for n, d, h in setup.shapes
        )
        resources["by_size"] = [{"min_params": largest, "num_workers": 1}]
    return {
        "name": "gpu-check-study",
        "budgets_flops": [setup.budget_flops],
        "sizes_per_budget": len(setup.shapes),
        "model": {
            "seq_len": setup.seq_len,
            "shapes": [{"n_layer": n, "d_model": d, "n_head": h} for n, d, h in setup.shapes],
        },
        "prior": {"tokens_per_param": 20, "span": 8},
        "data": {"corpus": "pydoc", "tokenizer": "byte"},
        "train": {
            "batch_tokens": setup.batch_tokens,
            "lr": 1e-3,
            "evals_per_trial": 2,
            "eval_tokens": setup.batch_tokens,
            "dtype": "bfloat16",
            "compile": setup.compile,
            "device": setup.device,
        },
        "resources": resources,
        "max_concurrent_trials": len(setup.shapes),
        "max_failures": 0,  # a check: a failure shows, it is not retried away
    }


def run_study(setup: StudySetup, folder: str) -> list[tuple[str, bool]]:
    """`scaling run` on the study's spec, in this process (on the Ray it has started). Returns
    (line, passed) for the study (`gpu study: 4/4 final`) and for its trials on a TorchTrainer
    worker group, whose backend is the one worker.py picks (nccl with a GPU, gloo without).
    At world size 1 the loop trains without the DDP wrapper (models/training/distributed.py
    wraps from 2 ranks): the process group, the worker's device and the compiled bf16 step run."""
    from scaling_orchestrator.cli.study import main as scaling
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.execution.worker import default_torch_backend
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
    from scaling_orchestrator.orchestrator.store.results import Store

    spec, results = os.path.join(folder, "study.yaml"), os.path.join(folder, "study")
    with open(spec, "w") as f:
        yaml.safe_dump(study_spec(setup), f)
    trials = make_plan(load_sweep(spec)).trials
    start = time.perf_counter()
    code = scaling(["run", spec, "--results", results, "--no-progress"])
    rows = Store(results).read_table().to_pylist()
    final = {r["trial_id"] for r in rows if r["final"] and r["status"] == "ok"}
    group = [t for t in trials if t.resources.num_workers >= 1]
    share = (f"{setup.resources['gpus_per_worker']:g} GPU" if setup.resources.get("gpus_per_worker")
             else f"{setup.resources['cpus_per_worker']:g} CPU")
    done = sum(t.trial_id in final for t in trials)
    done_group = sum(t.trial_id in final for t in group)
    backends = ", ".join(sorted({default_torch_backend(t) for t in group})) or "none"
    recipe = "bfloat16 + compile" if setup.compile else "bfloat16"
    study = (f"gpu study: {done}/{len(trials)} final ({len(rows)} rows, {share} per trial, {recipe}, "
             f"`scaling run` exit {code}, {time.perf_counter() - start:.0f} s)")
    workers = f"worker group: {backends}, world size 1, {recipe} on a TorchTrainer: {done_group}/{len(group)}"
    workers += " final"
    return [(study, done == len(trials) and code == 0), (workers, bool(group) and done_group == len(group))]


__all__ = [
    "CPU_NOMINAL_FLOPS",
    "MEMORY_MARGIN",
    "PEAK_BF16_FLOPS",
    "StudySetup",
    "largest_fitting",
    "model_rows",
    "peak_flops",
    "planner_rows",
    "run_study",
    "study_spec",
]
