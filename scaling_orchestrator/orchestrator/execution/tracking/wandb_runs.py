"""W&B through Ray Tune's WandbLoggerCallback: one run per trial, resumed on a re-run.

Tune's callback names a run after Tune's own trial (a new id on every Tuner) and groups by the
experiment folder; here the id, name, group and config come from the TrialSpec (runs.py), and
`resume="allow"` continues a run W&B already holds. With `mode: offline` no API key is asked
for: the runs are written under `dir` (default `<results>/_wandb`) for a later `wandb sync`.
"""

from __future__ import annotations

from ray.air.integrations.wandb import WandbLoggerCallback

from scaling_orchestrator.orchestrator.execution.tracking.runs import (
    CurveFeed,
    Feeding,
    run_config,
    run_id,
    run_name,
)
from scaling_orchestrator.orchestrator.execution.tune_config import spec_of
from scaling_orchestrator.orchestrator.spec.sections.tracking import WandbTracking
from scaling_orchestrator.orchestrator.store.results import Store

NO_KEY_MODES = ("offline", "disabled")


class WandbRuns(Feeding, WandbLoggerCallback):
    def __init__(self, settings: WandbTracking, sweep: str, results_dir: str):
        store = Store(results_dir, create=False)
        extra = {"entity": settings.entity, "mode": settings.mode,
                 "dir": settings.dir or (store.path("_wandb") if store.local else "")}
        super().__init__(project=settings.project or sweep, group=settings.group or sweep,
                         **{k: v for k, v in extra.items() if v})
        self.feed = CurveFeed(results_dir)

    def setup(self, *args, **kwargs):
        if self.kwargs.get("mode") in NO_KEY_MODES:  # Tune's setup would insist on an API key
            if "dir" in self.kwargs:
                Store(self.kwargs["dir"])  # wandb.init expects its dir to exist
            return
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial):
        spec = spec_of(trial.config)
        self._start_logging_actor(
            trial,
            [*self._exclude_results, *self.excludes, "config"],
            id=run_id(spec),
            name=run_name(spec),
            resume="allow",
            allow_val_change=True,
            group=self.group,
            project=self.project,
            config=run_config(spec),
            **self.kwargs,
        )
