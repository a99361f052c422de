"""A Ray Tune Searcher over a TrialQueue: how run_plan (and a user's own Tuner) runs a study.

    tuner = tune.Tuner(with_trial_resources(spec), param_space={"results_dir": "results/x"},
                       tune_config=tune.TuneConfig(search_alg=StudySearcher(queue, store), num_samples=-1))

Each suggestion is a trainable config ({"trial": TrialSpec.to_dict(), ...extra}); Tune merges
it into param_space. The queue decides what runs next (designs/queue.py); this class only
translates: Tune's trial ids <-> TrialSpecs, reports -> on_result, ends -> on_complete.
num_samples=-1 lets the queue, not a count, end the study (it returns FINISHED).
adaptive_searcher builds one over an adaptive study's queue, for a user's own Tuner.
"""

from __future__ import annotations

import os

from ray.tune.search import Searcher

from scaling_orchestrator.orchestrator.designs import make_plan, make_queue
from scaling_orchestrator.orchestrator.designs.queue import FINISHED, TrialQueue
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, Sweep, load_sweep
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store


class StudySearcher(Searcher):
    def __init__(self, queue: TrialQueue, store: Store, extra_config: dict | None = None):
        super().__init__(metric="val_loss", mode="min")
        self.queue, self.store, self.extra = queue, store, dict(extra_config or {})
        self.by_tune_id: dict[str, TrialSpec] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the queue's trials carry their own configs; param_space's constants merge in

    def suggest(self, trial_id: str):
        spec = self.queue.take(self.store)
        if spec is None or spec == FINISHED:
            return Searcher.FINISHED if spec == FINISHED else None
        self.by_tune_id[trial_id] = spec
        return {"trial": spec.to_dict(), **self.extra}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the store is the study's state (a re-run re-plans and skips what is final)."""

    def restore(self, checkpoint_path: str) -> None:
        """See save."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        spec = self.by_tune_id.get(trial_id)
        if spec is not None:
            self.queue.on_result(spec, result, self.store)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        spec = self.by_tune_id.get(trial_id)
        if spec is not None:
            self.queue.on_complete(spec, result, self.store, error)


def adaptive_searcher(spec_path_or_sweep, results_dir: str) -> StudySearcher:
    """A Ray Tune Searcher running the adaptive study of a spec (a path or a Sweep) into
    results_dir, for a user's own tune.Tuner:

        searcher = adaptive_searcher("examples/adaptive.yaml", "results/adaptive")
        tune.Tuner(with_trial_resources(spec), tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=-1)).fit()

    (spec: any of make_plan(sweep).trials; every trial reserves the same resources)."""
    sweep = spec_path_or_sweep if isinstance(spec_path_or_sweep, Sweep) else load_sweep(spec_path_or_sweep)
    if sweep.design.kind != "adaptive":
        raise SpecError(f"{sweep.source}: design: {sweep.design.kind}; adaptive_searcher needs "
                        "design: {kind: adaptive, ...}")
    plan = make_plan(sweep)
    store = Store(os.path.abspath(results_dir) if "://" not in results_dir else results_dir)
    store.write_plan(plan.trials, sweep.spec)
    todo = [t for t in plan.trials if t.trial_id not in store.done_trial_ids()]
    return StudySearcher(make_queue(plan, todo, store), store, {"results_dir": store.uri})
