"""MLflow through Ray Tune's MLflowLoggerCallback: one run per trial, found again on a re-run.

A run is tagged with its trial id; a re-run of the study looks the tag up in the experiment and
logs to that run rather than creating one. Metrics go in one log_batch per Tune result (the
curve points since the last evaluation, and the evaluation), not one request per value.
The default tracking URI is a file store in `<results>/_mlflow`: MLflow 3 keeps that store
only behind MLFLOW_ALLOW_FILE_STORE, which a `file:` URI here sets, since the `mlflow` extra
(mlflow-skinny) brings no database driver for `sqlite:` (which works where SQLAlchemy is installed).
"""

from __future__ import annotations

import os
import time

from mlflow.entities import Metric
from ray.air.integrations.mlflow import MLflowLoggerCallback

from scaling_orchestrator.orchestrator.execution.tracking.runs import (
    TRAINING_ITERATION,
    CurveFeed,
    run_config,
    run_name,
)
from scaling_orchestrator.orchestrator.execution.tune_config import spec_of
from scaling_orchestrator.orchestrator.spec.sections.tracking import MlflowTracking
from scaling_orchestrator.orchestrator.store.results import Store

TRIAL_TAG = "scaling.trial_id"


def default_uri(results_dir: str) -> str:
    store = Store(results_dir, create=False)
    return "file:" + store.path("_mlflow") if store.local else f"{store.uri}/_mlflow"


class MlflowRuns(MLflowLoggerCallback):
    def __init__(self, settings: MlflowTracking, sweep: str, results_dir: str):
        uri = settings.tracking_uri or default_uri(results_dir)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(tracking_uri=uri, experiment_name=settings.experiment or sweep)
        self.feed = CurveFeed(results_dir)

    def log_trial_start(self, trial):
        if trial in self._trial_runs:
            return
        spec = spec_of(trial.config)
        client = self.mlflow_util._get_client()
        found = client.search_runs([self.mlflow_util.experiment_id],
                                   filter_string=f"tags.`{TRIAL_TAG}` = '{spec.trial_id}'", max_results=1)
        if found:
            self._trial_runs[trial] = found[0].info.run_id
            return
        tags = {**self.tags, TRIAL_TAG: spec.trial_id}
        run = self.mlflow_util.start_run(run_name=run_name(spec), tags=tags)
        self._trial_runs[trial] = run.info.run_id
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=run_config(spec))

    def log_trial_result(self, iteration: int, trial, result: dict):
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, item[TRAINING_ITERATION])
            for item in self.feed.items(trial.config, result)
            for key, value in item.items()
            if key != TRAINING_ITERATION and isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        client = self.mlflow_util._get_client()
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            client.log_batch(self._trial_runs[trial], metrics=metrics[start : start + 1000])

    def log_trial_end(self, trial, failed: bool = False):
        status = "FAILED" if failed else "FINISHED"
        self.mlflow_util.end_run(run_id=self._trial_runs[trial], status=status)
