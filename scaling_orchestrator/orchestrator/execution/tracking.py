"""Experiment trackers from the spec's `tracking:` section, as Ray Tune callbacks.

tracking_callbacks(sweep.tracking, sweep.name, results_dir) gives one callback per tracker the
section names; run_plan adds them to its Tuner next to any callbacks its caller passes. Each
subclasses Tune's own callback for its tracker, so its class is built the first time a study
names it (wandb_runs, mlflow_runs, tensorboard_runs): importing this module loads neither Ray nor
a tracker's package, and a missing package is a one-line error naming the extra to install. What
a run holds (name, id, config, the curve points fed before each evaluation): store/tracker_runs.py.

W&B (WandbLoggerCallback): Tune's callback names a run after Tune's own trial (a new id on every
Tuner) and groups by the experiment folder; here the id, name, group and config come from the
TrialSpec, and `resume="allow"` continues a run W&B already holds. With `mode: offline` no API
key is asked for: the runs are written under `dir` (default `<results>/_wandb`) for a later
`wandb sync`.

MLflow (MLflowLoggerCallback): a run is tagged with its trial id; a re-run of the study looks the
tag up in the experiment and logs to that run rather than creating one. Metrics go in one
log_batch per Tune result (the curve points since the last evaluation, and the evaluation), not
one request per value. The default tracking URI is a file store in `<results>/_mlflow`: MLflow 3
keeps that store only behind MLFLOW_ALLOW_FILE_STORE, which a `file:` URI here sets, since the
`mlflow` extra (mlflow-skinny) brings no database driver for `sqlite:` (which works where
SQLAlchemy is installed).

TensorBoard (TBXLoggerCallback): Tune's callback writes into each trial's Tune folder (a new one
per Tuner); here every trial writes `<results>/_tensorboard/<run name>_<trial id>/`, so
`tensorboard --logdir <results>/_tensorboard` shows the whole study and a re-run adds event
files to the same runs.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time

from scaling_orchestrator.orchestrator.execution.tuner import spec_of
from scaling_orchestrator.orchestrator.spec.sections.tracking import Tracking
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.tracker_runs import (
    TRAINING_ITERATION,
    CurveFeed,
    run_config,
    run_id,
    run_name,
)

# tracker -> (the package it needs, the extra of scaling-orchestrator that installs it)
PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow"),
            "tensorboard": ("tensorboardX", "tensorboard")}
NO_KEY_MODES = ("offline", "disabled")  # W&B modes that need no API key
# How long a trial's end waits for its W&B run's wandb.finish (seconds). Tune's callback kills the
# logging actor without waiting when the Tuner ends (its __del__ gives 2 s): a run still
# finishing then kept an empty .wandb file, seen for a study's last trial on a busy machine.
FINISH_SECONDS = 120
MLFLOW_TRIAL_TAG = "scaling.trial_id"


class TrackerMissing(ImportError):
    """The spec names a tracker whose package is not installed."""


def check_installed(tracking: Tracking) -> None:
    for name in tracking.named:
        package, extra = PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise TrackerMissing(f"tracking.{name}: the {package} package is not installed; "
                                 f"pip install 'scaling-orchestrator[{extra}]'")


def tracking_callbacks(tracking: Tracking, sweep: str, results_dir: str) -> list:
    """The Tune callbacks of the section (an empty list when it names none)."""
    check_installed(tracking)
    callbacks = []
    if tracking.wandb:
        callbacks.append(wandb_runs()(tracking.wandb, sweep, results_dir))
    if tracking.mlflow:
        callbacks.append(mlflow_runs()(tracking.mlflow, sweep, results_dir))
    if tracking.tensorboard:
        callbacks.append(tensorboard_runs()(results_dir))
    return callbacks


class Feeding:
    """Mixin for a Tune LoggerCallback: each result is logged as CurveFeed's items, in order."""

    feed: CurveFeed

    def log_trial_result(self, iteration: int, trial, result: dict):
        for item in self.feed.items(spec_of(trial.config), result):
            super().log_trial_result(item[TRAINING_ITERATION], trial, item)


@functools.cache
def wandb_runs() -> type:
    """WandbRuns(settings: WandbTracking, sweep, results_dir): one W&B run per trial (module doc)."""
    # Ray loads only for a study that names W&B
    import ray
    from ray.air.integrations.wandb import WandbLoggerCallback

    class WandbRuns(Feeding, WandbLoggerCallback):
        def __init__(self, settings, sweep: str, results_dir: str):
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

    return WandbRuns


def mlflow_uri(results_dir: str) -> str:
    """MLflow's default tracking URI: a file store in `<results>/_mlflow`."""
    store = Store(results_dir, create=False)
    return "file:" + store.path("_mlflow") if store.local else f"{store.uri}/_mlflow"


@functools.cache
def mlflow_runs() -> type:
    """MlflowRuns(settings: MlflowTracking, sweep, results_dir): one MLflow run per trial, found
    again by its tag on a re-run (module doc)."""
    # Ray and mlflow (an optional extra) load only for a study that names MLflow
    from mlflow.entities import Metric
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MlflowRuns(MLflowLoggerCallback):
        def __init__(self, settings, sweep: str, results_dir: str):
            uri = settings.tracking_uri or mlflow_uri(results_dir)
            if uri.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            super().__init__(tracking_uri=uri, experiment_name=settings.experiment or sweep)
            self.feed = CurveFeed(results_dir)

        def log_trial_start(self, trial):
            if trial in self._trial_runs:
                return
            spec = spec_of(trial.config)
            client = self.mlflow_util._get_client()
            found = client.search_runs([self.mlflow_util.experiment_id], max_results=1,
                                       filter_string=f"tags.`{MLFLOW_TRIAL_TAG}` = '{spec.trial_id}'")
            if found:
                self._trial_runs[trial] = found[0].info.run_id
                return
            tags = {**self.tags, MLFLOW_TRIAL_TAG: spec.trial_id}
            run = self.mlflow_util.start_run(run_name=run_name(spec), tags=tags)
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=run_config(spec))

        def log_trial_result(self, iteration: int, trial, result: dict):
            if trial not in self._trial_runs:
                self.log_trial_start(trial)
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, float(value), now, item[TRAINING_ITERATION])
                for item in self.feed.items(spec_of(trial.config), result)
                for key, value in item.items()
                if key != TRAINING_ITERATION and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ]
            client = self.mlflow_util._get_client()
            for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
                client.log_batch(self._trial_runs[trial], metrics=metrics[start : start + 1000])

        def log_trial_end(self, trial, failed: bool = False):
            status = "FAILED" if failed else "FINISHED"
            self.mlflow_util.end_run(run_id=self._trial_runs[trial], status=status)

    return MlflowRuns


@functools.cache
def tensorboard_runs() -> type:
    """TensorBoardRuns(results_dir): event files per trial in `<results>/_tensorboard` (module doc)."""
    # Ray loads only for a study that names TensorBoard
    from ray.tune.logger import TBXLoggerCallback

    class TensorBoardRuns(Feeding, TBXLoggerCallback):
        def __init__(self, results_dir: str):
            super().__init__()
            self.logdir = Store(results_dir, create=False).path("_tensorboard")
            self.feed = CurveFeed(results_dir)

        def log_trial_start(self, trial):
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            spec = spec_of(trial.config)
            folder = os.path.join(self.logdir, f"{run_name(spec)}_{spec.trial_id}")
            self._trial_writer[trial] = self._summary_writer_cls(folder, flush_secs=30)
            self._trial_result[trial] = {}

    return TensorBoardRuns
