"""W&B through Ray Tune's WandbLoggerCallback: one run per trial, resumed on a re-run.

Tune's callback names a run after Tune's own trial (a new id on every Tuner) and groups by the
experiment folder; here the id, name, group and config come from the TrialSpec (runs.py), and
`resume="allow"` continues a run W&B already holds. With `mode: offline` no API key is asked
for: the runs are written under `dir` (default `<results>/_wandb`) for a later `wandb sync`.
"""

from __future__ import annotations

import ray
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
# How long a trial's end waits for its run's wandb.finish (seconds). Tune's callback kills the
# logging actor without waiting when the Tuner ends (its __del__ gives 2 s): a run still
# finishing then kept an empty .wandb file, seen for a study's last trial on a busy machine.
FINISH_SECONDS = 120


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

    def log_trial_end(self, trial, failed: bool = False):
        self._signal_logging_actor_stop(trial=trial)
        if trial in self._trial_logging_futures:
            ray.wait([self._trial_logging_futures[trial]], timeout=FINISH_SECONDS)
        self._cleanup_logging_actors()
