"""Placing a plan's trials: resources by size, a micro-batch that fits each worker's memory, and
what the study costs on the declared cluster. Pure; no Ray.

Micro-batch: a worker trains rows = batch_tokens / (num_workers * seq_len) sequences per
optimizer step. The spec's micro_batch_tokens (0: the whole share) is the most a forward
pass takes; when its scaling_orchestrator.models.memory estimate is over memory_per_worker_gb less
MEMORY_MARGIN,
the trial takes the largest whole number of sequences that divides its rows and fits, and
accumulates gradients up to the same batch_tokens (the optimizer sees the same batch). A size
that cannot fit one sequence is refused, naming it. memory_per_worker_gb 0 (not declared):
micro_batch_tokens stays as the spec says. Worked example: the GPU example's 24L x 1536d
(732M params, vocab 32768, seq 1024, bf16, 2 DDP workers) on a 24 GB A10G: its 64 sequences
need 134 GB, 4 need 23.5 GB, over 21.6 GB (24 less 10%); 2 sequences (19.8 GB) it is, 128
micro-batches a step. One sequence needs 17.9 GB, 14.6 of them weights, gradients, DDP's
buckets and AdamW's states.

Cost: GPU-hours = sum over trials of seconds x GPUs / 3600; makespan: the trials longest
first, each started as soon as enough GPUs are free (Tune starts pending trials as their
placement groups fit), on the declared number of GPUs.
"""

from __future__ import annotations

import dataclasses
import heapq

from scaling_orchestrator.models.memory import estimate_memory
from scaling_orchestrator.orchestrator.fmt import si
from scaling_orchestrator.orchestrator.spec.sections.backend import trial_resources
from scaling_orchestrator.orchestrator.spec.sections.resources import ResourceRules, resources_for, rule_label
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError

MEMORY_MARGIN = 0.10
GB = 1e9  # memory_per_worker_gb counts 1e9 bytes: an A10G's "24 GB" is 24.1e9, an H100's "80 GB" 85.5e9


def place_trials(sweep, trials, rules: ResourceRules | None = None) -> tuple[list[TrialSpec], list[str]]:
    """Each trial placed (place_trial; rules None: sweep.resources for every size), and the
    notes saying what placing changed (placement_notes)."""
    rules = rules if rules is not None else ResourceRules(base=sweep.resources)
    placed = [place_trial(trial, rules) for trial in trials]
    return placed, placement_notes(placed, rules)


def place_trial(trial: TrialSpec, rules: ResourceRules, *, fit_memory: bool = True) -> TrialSpec:
    """The trial with its size's Resources and (fit_memory) a micro_batch_tokens that fits them.
    plan.make_trial calls it, so every design's trials are placed before ids link them (a
    branch names its trunk's id). A search varies batch_tokens: its base trial takes
    fit_memory=False, as a cut micro-batch need not divide the batch a search picks."""
    trial = dataclasses.replace(trial, resources=trial_resources(trial, resources_for(rules, trial.shape)))
    # a trainer of the user's own holds its own model: its memory is no estimate of ours
    micro = fit_micro_batch(trial) if fit_memory and not trial.trainer else trial.train.micro_batch_tokens
    if micro != trial.train.micro_batch_tokens:
        trial = dataclasses.replace(trial, train=dataclasses.replace(trial.train, micro_batch_tokens=micro))
    return trial


def placement_notes(trials, rules: ResourceRules) -> list[str]:
    """A line per by_size rule some size reached, and one naming the micro-batches cut to fit."""
    return _rule_notes(trials, rules) + _micro_batch_notes(trials)


def fit_micro_batch(trial: TrialSpec) -> int:
    """The trial's micro_batch_tokens: as given when it fits (or no memory is declared), else the
    largest whole number of sequences dividing the worker's rows that fits; SpecError if none."""
    res, shape, config = trial.resources, trial.shape, trial.train
    rows = _rows_per_worker(trial)
    if not res.memory_per_worker_gb:
        return config.micro_batch_tokens
    limit = (1 - MEMORY_MARGIN) * res.memory_per_worker_gb * GB
    cap = min(config.micro_tokens // shape.seq_len, rows)
    for micro_rows in sorted((d for d in range(1, cap + 1) if rows % d == 0), reverse=True):
        if worker_memory(trial, micro_rows).total_bytes <= limit:
            return config.micro_batch_tokens if micro_rows == cap else micro_rows * shape.seq_len
    need = worker_memory(trial, 1)
    parts = ", ".join(f"{k} {si(v)}B" for k, v in need.breakdown().items() if v and k != "total")
    raise SpecError(
        f"resources.memory_per_worker_gb: {res.memory_per_worker_gb:g} GB cannot hold size "
        f"{trial.size_label or shape.n_layer} ({si(shape.param_counts()['total'])} params) training one "
        f"sequence of {shape.seq_len} tokens: it needs {need.total_bytes:,} bytes ({parts}), over "
        f"{limit:,.0f} ({1 - MEMORY_MARGIN:.0%} of it); declare a larger GPU or drop the size"
    )


def worker_memory(trial: TrialSpec, micro_rows: int | None = None):
    """scaling_orchestrator.models.memory's estimate for one worker of the trial, at micro_rows sequences per
    forward
    (None: the trial's own micro-batch)."""
    rows = _rows_per_worker(trial)
    micro_rows = micro_rows or min(trial.train.micro_tokens // trial.shape.seq_len, rows)
    res = trial.resources
    return estimate_memory(
        trial.shape,
        micro_rows * trial.shape.seq_len,
        trial.train.dtype,
        accumulating=micro_rows < rows,
        world_size=max(1, res.num_workers),
        device="cuda" if res.gpus_per_worker > 0 else "cpu",
    )


def trial_memory(trial: TrialSpec) -> dict:
    """`scaling plan --json`'s per-trial memory: the worker's peak bytes and its micro-batch tokens."""
    micro_rows = min(trial.train.micro_tokens // trial.shape.seq_len, _rows_per_worker(trial))
    return {
        "memory_bytes": worker_memory(trial).total_bytes,
        "micro_batch_tokens": micro_rows * trial.shape.seq_len,
    }


def _rows_per_worker(trial: TrialSpec) -> int:
    workers, seq = max(1, trial.resources.num_workers), trial.shape.seq_len
    if trial.train.batch_tokens % (workers * seq):
        raise SpecError(
            f"resources.num_workers: {workers} workers for size {trial.size_label} must split "
            f"train.batch_tokens ({trial.train.batch_tokens}) into whole sequences of {seq} each"
        )
    return trial.train.batch_tokens // (workers * seq)


def _by_size(trials) -> list[TrialSpec]:
    """One trial per size, smallest first."""
    sizes = {t.size_label: t for t in trials}
    return sorted(sizes.values(), key=lambda t: t.shape.param_counts()["total"])


def _rule_notes(trials, rules: ResourceRules) -> list[str]:
    """One line per by_size rule that some size reached: which sizes and what they reserve."""
    groups: dict[str, list[TrialSpec]] = {}
    for t in _by_size(trials):
        rule = rule_label(rules, t.shape)
        if rule:
            groups.setdefault(rule, []).append(t)
    notes = []
    for rule, sizes in groups.items():
        res = sizes[0].resources
        notes.append(
            f"{rule}: {', '.join(t.size_label for t in sizes)} take {res.num_workers} workers x "
            f"{res.gpus_per_worker:g} GPU, {res.cpus_per_worker:g} CPU each"
        )
    return notes


def _micro_batch_notes(trials) -> list[str]:
    """One line for the sizes whose micro-batch was cut to fit: 'd9-d15 16, d24 2 of 256 sequences'."""
    cut = []
    for t in _by_size(trials):
        rows, micro = _rows_per_worker(t), trial_memory(t)["micro_batch_tokens"] // t.shape.seq_len
        if t.resources.memory_per_worker_gb and micro < rows:
            cut.append((t.size_label, micro, rows, t.resources.memory_per_worker_gb))
    if not cut:
        return []
    runs: list[list] = []
    for label, micro, rows, gb in cut:
        if runs and runs[-1][2:] == [micro, rows, gb]:
            runs[-1][1] = label
        else:
            runs.append([label, label, micro, rows, gb])
    parts = [
        f"{first}{'-' + last if last != first else ''} {micro} of {rows} ({gb:g} GB)"
        for first, last, micro, rows, gb in runs
    ]
    return [
        f"micro-batches cut to fit each worker's memory less {MEMORY_MARGIN:.0%}, in sequences per forward "
        f"(gradients accumulate to the same batch_tokens): {'; '.join(parts)}"
    ]


def device_micro_batch_tokens(trial: TrialSpec, device_bytes: int) -> int:
    """fit_micro_batch against a device's own memory, for a worker whose spec declared none
    (memory_per_worker_gb 0): torch.cuda.get_device_properties(i).total_memory on the node."""
    declared = dataclasses.replace(trial.resources, memory_per_worker_gb=device_bytes / GB)
    return fit_micro_batch(dataclasses.replace(trial, resources=declared))


def declared_gpus(sweep) -> float:
    """The GPUs a spec declares: max_concurrent_trials x every size's gpus_per_trial (the GPU
    example: 8 x 2 = 16); 0 without max_concurrent_trials or GPUs."""
    return (sweep.max_concurrent_trials or 0) * sweep.resources.gpus_per_trial


def trial_gpus(trial: TrialSpec) -> float:
    return trial.resources.gpus_per_trial if trial.resources.gpus_per_worker else 0.0


def scaled_trial_seconds(
    flops_per_second: float, overhead_seconds: float, base: Resources, trial: TrialSpec
) -> float:
    """A trial's seconds when the spec's flops_per_second is per trial of the base resources and
    data parallelism scales it by the GPUs (else CPUs) the trial holds: 4 GPUs where the base has
    2 -> twice the rate. 1e18 FLOPs at 7.9e14 x 2 + 30 s -> 663 s."""
    unit = "gpus_per_trial" if base.gpus_per_worker and trial.resources.gpus_per_worker else "cpus_per_trial"
    rate = flops_per_second * getattr(trial.resources, unit) / getattr(base, unit)
    return trial.flops / rate + overhead_seconds


def cluster_cost(plan_trials, trial_seconds_fn, gpus_available: float) -> dict:
    """GPU-hours and makespan of the trials on gpus_available GPUs (module doc). No trial on a
    GPU: gpu_hours 0 and makespan_seconds None (the plan's own concurrency estimate applies);
    fewer GPUs declared than the widest trial needs (none: no max_concurrent_trials): GPU-hours
    only, makespan None. 3 trials of 1 GPU x (10, 6, 4) s on 2 GPUs: 20 GPU-seconds, makespan 10 s."""
    jobs = sorted(((trial_seconds_fn(t), trial_gpus(t)) for t in plan_trials), key=lambda j: -j[0])
    gpu_seconds = sum(seconds * gpus for seconds, gpus in jobs)
    if not gpu_seconds:
        return {"gpus": gpus_available, "gpu_hours": 0.0, "makespan_seconds": None, "utilisation": None}
    if max(gpus for _, gpus in jobs) > gpus_available:
        return {
            "gpus": gpus_available,
            "gpu_hours": gpu_seconds / 3600,
            "makespan_seconds": None,
            "utilisation": None,
        }
    span = _list_schedule(jobs, gpus_available)
    return {
        "gpus": gpus_available,
        "gpu_hours": gpu_seconds / 3600,
        "makespan_seconds": span,
        "utilisation": gpu_seconds / (gpus_available * span),
    }


def _list_schedule(jobs: list[tuple[float, float]], gpus: float) -> float:
    """Longest first; at each moment start every waiting job, in order, that the free GPUs hold
    (a wide job waits while narrower ones behind it start). Returns when the last one ends."""
    waiting, running, now, free = list(jobs), [], 0.0, gpus
    while waiting:
        still = []
        for seconds, need in waiting:
            if need <= free + 1e-9:
                free -= need
                heapq.heappush(running, (now + seconds, need))
            else:
                still.append((seconds, need))
        waiting = still
        if waiting:
            now, need = heapq.heappop(running)
            free += need
    return max([now] + [end for end, _ in running])


__all__ = [
    "GB",
    "MEMORY_MARGIN",
    "cluster_cost",
    "declared_gpus",
    "device_micro_batch_tokens",
    "fit_micro_batch",
    "place_trials",
    "scaled_trial_seconds",
    "trial_gpus",
    "trial_memory",
    "worker_memory",
]
