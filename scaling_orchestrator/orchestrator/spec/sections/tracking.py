"""The spec's `tracking:` section: experiment trackers that get one run per trial.

    tracking:
      wandb: {project: ladder, entity: my-team, group: chinchilla-v2, mode: offline}
      mlflow: {tracking_uri: "file:results/mlruns", experiment: ladder}
      tensorboard: true

Every key is optional: W&B's project defaults to the sweep's name and its group to the sweep
(`mode: offline` writes runs under `<results>/_wandb` with no network; `wandb sync` uploads them
later); MLflow's tracking_uri defaults to a file store in `<results>/_mlflow` and its experiment
to the sweep's name; TensorBoard writes `<results>/_tensorboard/<run name>/` event files. The
runs are filled by orchestrator/execution/tracking.py through Ray Tune's own logger callbacks; each
tracker is an optional extra, imported only when this section names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling_orchestrator.orchestrator.spec.validate import SpecError, boolean, choice, mapping

KEYS = ("wandb", "mlflow", "tensorboard")
WANDB_KEYS = ("project", "entity", "group", "mode", "dir")
WANDB_MODES = ("online", "offline", "disabled")
MLFLOW_KEYS = ("tracking_uri", "experiment")


@dataclass(frozen=True)
class WandbTracking:
    project: str = ""  # "" -> the sweep's name
    entity: str = ""  # "" -> the logged-in user's default entity
    group: str = ""  # "" -> the sweep's name
    mode: str = "online"
    dir: str = ""  # "" -> <results>/_wandb


@dataclass(frozen=True)
class MlflowTracking:
    tracking_uri: str = ""  # "" -> file:<results>/_mlflow
    experiment: str = ""  # "" -> the sweep's name


@dataclass(frozen=True)
class Tracking:
    wandb: WandbTracking | None = None
    mlflow: MlflowTracking | None = None
    tensorboard: bool = False

    @property
    def named(self) -> tuple[str, ...]:
        """The trackers this section turns on, in KEYS order."""
        return tuple(k for k in KEYS if getattr(self, k))


def parse_tracking(raw) -> Tracking:
    """The `tracking:` section, checked (None or absent: no tracker)."""
    if raw is None:
        return Tracking()
    raw = mapping(raw, "tracking", KEYS)
    wandb = _strings(raw["wandb"], "tracking.wandb", WANDB_KEYS) if "wandb" in raw else None
    if wandb is not None:
        choice(wandb.get("mode", "online"), "tracking.wandb.mode", WANDB_MODES)
    mlflow = _strings(raw["mlflow"], "tracking.mlflow", MLFLOW_KEYS) if "mlflow" in raw else None
    return Tracking(
        wandb=None if wandb is None else WandbTracking(**wandb),
        mlflow=None if mlflow is None else MlflowTracking(**mlflow),
        tensorboard=boolean(raw.get("tensorboard", False), "tracking.tensorboard"),
    )


def _strings(raw, path: str, keys) -> dict:
    """A tracker's mapping of string settings (`wandb: {}` or `wandb: true`: all defaults)."""
    if raw is True or raw == {}:
        return {}
    raw = mapping(raw, path, keys)
    for key, value in raw.items():
        if not isinstance(value, str) or not value:
            raise SpecError(f"{path}.{key}: {value!r} must be a non-empty string")
    return dict(raw)
