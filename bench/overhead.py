"""Orchestrator overhead: the same N demo-sized trials through run_plan and in one bare process.

    python bench/overhead.py [--trials 8] [--tokens 98304]

Bare: scaling_orchestrator.models.training.loop called directly, one trial after another, torch threads = all
cores (what
one would do by hand). Orchestrated: run_plan on a local Ray (in-process trials, 1 CPU and 1
torch thread each, as many at once as there are cores), rows and checkpoints written to the
store. Prints both walls, the per-trial overhead and the ratio, twice: "cold" starts Ray
inside run_plan (a laptop `scaling run`), "warm" reuses a running Ray (a cluster, or a
notebook). The goal for demo-sized trials (a few seconds each) is a ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, train  # noqa: E402
from scaling_orchestrator.orchestrator.execution.run import run_plan  # noqa: E402
from scaling_orchestrator.orchestrator.execution.tuner import start_local_ray  # noqa: E402
from scaling_orchestrator.orchestrator.plan.build import Plan  # noqa: E402
from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep  # noqa: E402
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec  # noqa: E402
from scaling_orchestrator.orchestrator.store.results import Store  # noqa: E402


def demo_trials(n: int, tokens: int, sweep: str) -> list[TrialSpec]:
    """n trials over 4 widths (d_model 32..128, 2 layers, byte-level pydoc, seq 128)."""
    widths = [32, 64, 96, 128]
    return [
        TrialSpec(
            sweep=sweep,
            kind="scaling",
            shape=ModelShape(n_layer=2, d_model=widths[i % 4], n_head=2, vocab_size=256, seq_len=128),
            data=DataSpec(corpus="pydoc", tokenizer="byte"),
            train=TrainConfig(total_tokens=tokens, batch_tokens=2048, eval_tokens=8192, seed=i),
            budget_flops=1e12,
            resources=Resources(num_workers=0, cpus_per_worker=1),
        )
        for i in range(n)
    ]


def demo_plan(trials: list[TrialSpec]) -> Plan:
    """A Plan of the fixed-token trials above (an IsoFLOP plan would give each size its own
    tokens); run_plan reads only the trials and the sweep's run settings: max_failures 2 and
    concurrency sized from the cluster (None), as a spec without max_concurrent_trials."""
    sweep = parse_sweep(
        {
            "name": trials[0].sweep,
            "budgets_flops": [1e12],
            "sizes_per_budget": 3,
            "model": {"depth": {"min": 1, "max": 4}, "aspect_ratio": 32, "head_dim": 16, "seq_len": 128},
            "train": {"batch_tokens": 2048},
        }
    )
    return Plan(dataclasses.replace(sweep, max_failures=2, max_concurrent_trials=None), tuple(trials))


def bare(trials: list[TrialSpec]) -> float:
    start = time.perf_counter()
    threads = os.cpu_count() or 1
    for spec in trials:
        data = prepare_data(spec.data)
        train(spec.shape, dataclasses.replace(spec.train, threads=threads), data)
    return time.perf_counter() - start


def orchestrated(trials: list[TrialSpec], warm: bool) -> tuple[float, float]:
    """(wall seconds of run_plan, sum of the trials' own training seconds from their rows)."""
    import ray

    with tempfile.TemporaryDirectory() as results:
        if warm:
            start_local_ray()
        start = time.perf_counter()
        summary = run_plan(demo_plan(trials), results, progress=False)
        wall = time.perf_counter() - start
        if warm:
            ray.shutdown()
        table = Store(results).read_table()
        train_seconds = sum(
            w for w, final in zip(table["wall_seconds"].to_pylist(), table["final"].to_pylist()) if final
        )
    assert len(summary.completed) == len(trials), summary
    return wall, train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=98304, help="training tokens per trial")
    args = parser.parse_args()
    prepare_data(DataSpec(corpus="pydoc", tokenizer="byte"))  # token cache built once for all
    bare_wall = bare(demo_trials(args.trials, args.tokens, "bench-bare"))
    print(f"{args.trials} trials x {args.tokens} tokens, {os.cpu_count()} cores")
    print(
        f"bare, sequential, {os.cpu_count()} threads : {bare_wall:7.1f} s "
        f"({bare_wall / args.trials:.1f} s per trial)"
    )
    for label, warm in (("cold", False), ("warm", True)):
        # a new sweep name per variant: new trial ids, so nothing is skipped
        wall, train_seconds = orchestrated(demo_trials(args.trials, args.tokens, f"bench-{label}"), warm)
        # Ray's own cost: slot-seconds held minus seconds spent in scaling_orchestrator.models.training.loop
        # (the idle tail
        # of the last trial counts as overhead, so this is an upper bound)
        slots = os.cpu_count() or 1
        print(
            f"run_plan ({label} Ray)              : {wall:7.1f} s  ratio {wall / bare_wall:.2f}; "
            f"per trial {(wall - bare_wall) / args.trials:+.2f} s vs bare, "
            f"{(wall * slots - train_seconds) / args.trials:.2f} s of slot time outside training"
        )


if __name__ == "__main__":
    main()
