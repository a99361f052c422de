"""Spec -> plan -> Ray Tune/Train execution -> Parquet results; the CLI. The only Ray code.

The programmatic API, importable from here without loading Ray until it is used:

    from orchestrator import load_sweep, make_plan, run_plan, run_search, trainable
    plan = make_plan(load_sweep("examples/demo.yaml"))
    summary = run_plan(plan)                     # results in the spec's storage, results/demo
    summary = run_plan(plan, "elsewhere/demo")   # or any folder (s3:// and gs:// too)
    # a spec with an hparams section: run_search(plan) first, as `scaling run` does
    # in a user's own tune.Tuner: with_trial_resources(spec) and asha_for(spec) (README)
"""

from __future__ import annotations

import importlib

_API = {
    "load_sweep": "orchestrator.spec",
    "parse_sweep": "orchestrator.spec",
    "SpecError": "orchestrator.spec",
    "make_plan": "orchestrator.plan",
    "run_plan": "orchestrator.run",
    "run_search": "orchestrator.search",
    "trainable": "orchestrator.worker",
    "with_trial_resources": "orchestrator.worker",
    "asha_for": "orchestrator.stops",
    "TrialSpec": "orchestrator.trial",
    "Resources": "orchestrator.trial",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
