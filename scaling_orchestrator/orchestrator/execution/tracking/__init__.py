"""Experiment trackers from the spec's `tracking:` section, as Ray Tune callbacks.

tracking_callbacks(sweep.tracking, sweep.name, results_dir) gives one callback per tracker the
section names (W&B, MLflow, TensorBoard; runs.py says what a run holds); run_plan adds them to
its Tuner next to any callbacks its caller passes. A tracker's package is imported only when the
spec names it, and a missing one is a one-line error naming the extra to install.
"""

from __future__ import annotations

import importlib.util

from scaling_orchestrator.orchestrator.spec.sections.tracking import Tracking

# tracker -> (the package it needs, the extra of scaling-orchestrator that installs it)
PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow"),
            "tensorboard": ("tensorboardX", "tensorboard")}


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
        # Ray (and the tracker's package) loads only for a study that names the tracker
        from scaling_orchestrator.orchestrator.execution.tracking.wandb_runs import WandbRuns

        callbacks.append(WandbRuns(tracking.wandb, sweep, results_dir))
    if tracking.mlflow:
        # Ray (and the tracker's package) loads only for a study that names the tracker
        from scaling_orchestrator.orchestrator.execution.tracking.mlflow_runs import MlflowRuns

        callbacks.append(MlflowRuns(tracking.mlflow, sweep, results_dir))
    if tracking.tensorboard:
        # Ray (and the tracker's package) loads only for a study that names the tracker
        from scaling_orchestrator.orchestrator.execution.tracking.tensorboard_runs import TensorBoardRuns

        callbacks.append(TensorBoardRuns(results_dir))
    return callbacks
