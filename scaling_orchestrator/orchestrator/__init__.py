"""Spec -> plan -> Ray Tune/Train execution -> Parquet results; the CLI. The only Ray code.

The programmatic API, importable from here without loading Ray until it is used:

    from scaling_orchestrator.orchestrator import load_sweep
    from scaling_orchestrator.orchestrator import make_plan
    from scaling_orchestrator.orchestrator import run_plan
    from scaling_orchestrator.orchestrator import run_search
    from scaling_orchestrator.orchestrator import trainable
    plan = make_plan(load_sweep("examples/demo.yaml"))
    summary = run_plan(plan)                     # results in the spec's storage, results/demo
    summary = run_plan(plan, "elsewhere/demo")   # or any folder (s3:// and gs:// too)
    # a spec with an hparams section: run_search(plan) first, as `scaling run` does
    # in a user's own tune.Tuner: with_trial_resources(spec) and asha_for(spec) (README)
"""

from __future__ import annotations

import importlib

_API = {
    "load_sweep": "scaling_orchestrator.orchestrator.spec.sweep",
    "parse_sweep": "scaling_orchestrator.orchestrator.spec.sweep",
    "SpecError": "scaling_orchestrator.orchestrator.spec.sweep",
    "make_plan": "scaling_orchestrator.orchestrator.plan.build",
    "run_plan": "scaling_orchestrator.orchestrator.execution.run",
    "run_search": "scaling_orchestrator.orchestrator.execution.search",
    "trainable": "scaling_orchestrator.orchestrator.execution.worker",
    "with_trial_resources": "scaling_orchestrator.orchestrator.execution.worker",
    "asha_for": "scaling_orchestrator.orchestrator.execution.stops",
    "TrialSpec": "scaling_orchestrator.orchestrator.spec.trial",
    "Resources": "scaling_orchestrator.orchestrator.spec.trial",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
