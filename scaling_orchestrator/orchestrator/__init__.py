"""Spec -> plan -> Ray Tune/Train execution -> Parquet results, in subpackages that import only
downward: fmt < spec < plan < store < designs < backends < execution (the only one with Ray).

The programmatic API, and the types it gives back:

    from scaling_orchestrator.orchestrator import load_sweep, make_plan, run_plan, read_results
    sweep = load_sweep("examples/demo.yaml")     # Sweep: the spec, typed and checked
    plan = make_plan(sweep)                      # Plan: its TrialSpecs, notes and cost
    summary = run_plan(plan)                     # RunSummary; results in the spec's storage
    summary = run_plan(plan, "elsewhere/demo")   # or any folder (s3:// and gs:// too)
    table = read_results(summary.results_dir)    # pyarrow.Table, one row per evaluation
    # a spec with an hparams section: run_search(plan) first, as `scaling run` does
    # in a user's own tune.Tuner: trainable, with_trial_resources(spec), asha_for(spec),
    # adaptive_searcher(spec, results_dir) (README)

Each name loads its module on first use (PEP 562), so importing this package, as every Ray
worker does, loads neither the planner nor Ray; only the execution names load Ray.
"""

from __future__ import annotations

import importlib

_SPEC, _PLAN, _EXEC = ("scaling_orchestrator.orchestrator.spec", "scaling_orchestrator.orchestrator.plan",
                       "scaling_orchestrator.orchestrator.execution")
_API = {
    "Sweep": f"{_SPEC}.sweep",
    "load_sweep": f"{_SPEC}.sweep",
    "parse_sweep": f"{_SPEC}.sweep",
    "SpecError": f"{_SPEC}.sweep",
    "TrialSpec": f"{_SPEC}.trial",
    "Resources": f"{_SPEC}.trial",
    "Plan": f"{_PLAN}.build",
    "make_plan": "scaling_orchestrator.orchestrator.designs",
    "read_results": "scaling_orchestrator.orchestrator.store.results",
    "RunSummary": f"{_EXEC}.run",
    "run_plan": f"{_EXEC}.run",
    "run_search": f"{_EXEC}.search",
    "SearchSummary": f"{_EXEC}.search",
    "trainable": f"{_EXEC}.worker",
    "with_trial_resources": f"{_EXEC}.worker",
    "asha_for": f"{_EXEC}.stops",
    "adaptive_searcher": f"{_EXEC}.searcher",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:  # by name, once: the lazy API of the module doc
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'scaling_orchestrator.orchestrator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
