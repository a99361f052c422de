"""TensorBoard through Ray Tune's TBXLoggerCallback: event files per trial in one folder.

Tune's callback writes into each trial's Tune folder (a new one per Tuner); here every trial
writes `<results>/_tensorboard/<run name>_<trial id>/`, so `tensorboard --logdir
<results>/_tensorboard` shows the whole study and a re-run adds event files to the same runs.
"""

from __future__ import annotations

import os

from ray.tune.logger import TBXLoggerCallback

from scaling_orchestrator.orchestrator.execution.tracking.runs import CurveFeed, Feeding, run_name
from scaling_orchestrator.orchestrator.execution.tune_config import spec_of
from scaling_orchestrator.orchestrator.store.results import Store


def default_dir(results_dir: str) -> str:
    return Store(results_dir, create=False).path("_tensorboard")


class TensorBoardRuns(Feeding, TBXLoggerCallback):
    def __init__(self, results_dir: str):
        super().__init__()
        self.logdir = default_dir(results_dir)
        self.feed = CurveFeed(results_dir)

    def log_trial_start(self, trial):
        if trial in self._trial_writer:
            self._trial_writer[trial].close()
        spec = spec_of(trial.config)
        folder = os.path.join(self.logdir, f"{run_name(spec)}_{spec.trial_id}")
        self._trial_writer[trial] = self._summary_writer_cls(folder, flush_secs=30)
        self._trial_result[trial] = {}
