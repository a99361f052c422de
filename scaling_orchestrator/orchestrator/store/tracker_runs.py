"""What every tracker's run of a trial holds: its name, id and config, and the metrics fed to it
from the store. No Ray: execution/tracking.py hands them to the trackers' Tune callbacks.

One run per trial, named `<size_label>@<budget>` ("d4@1.4e12"), with `+<group>` for trunks,
branches and held-out trials, `+r<round>` for an adaptive study's later rounds, `+<kind>` for a
search or shape trial and `+seed<k>` past seed 0. Its id comes from the trial id (a content
hash), so a re-run of the study resumes the same run instead of opening another.

Metrics: each evaluation as Tune reports it (val_loss, train_loss, tokens, ...), and before it
the trial's per-step curve points since the previous report, read from the store's
`_curves/<trial_id>.parquet` (the worker flushes them before it reports), under `curve/`. Every
item gets a log index that only grows and is the same on a re-run: 2 x step for a curve point,
2 x step + 1 for the evaluation at that step (a point and an evaluation share a step). It
stands in for Tune's training_iteration, the x axis the trackers' callbacks log against.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from scaling_orchestrator.analysis.data.curves import CURVES_DIR, read_curve_file
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store

TRAINING_ITERATION = "training_iteration"  # ray.tune.result's name, without importing Ray here
CURVE_KEYS = ("train_loss", "lr", "grad_norm", "tokens_per_second", "mfu")


def budget_text(flops: float) -> str:
    """1.4e12 -> '1.4e12', 1e15 -> '1e15': the budget as the spec writes it."""
    return f"{flops:.3g}".replace("e+", "e")


def run_name(spec: TrialSpec) -> str:
    size = spec.size_label or f"{spec.shape.n_layer}x{spec.shape.d_model}"
    name = f"{size}@{budget_text(spec.budget_flops)}"
    name += f"+{spec.group}" if spec.group else ""
    name += f"+r{spec.round}" if spec.round else ""
    name += f"+{spec.kind}" if spec.kind != "scaling" else ""
    name += f"+lr{spec.train.lr:.3g}" if spec.kind == "hparam" else ""  # a search's runs of one size
    return name + (f"+seed{spec.train.seed}" if spec.train.seed else "")


def run_id(spec: TrialSpec) -> str:
    """The tracker's run id: the sweep and the trial id, the same on every re-run."""
    return f"{spec.sweep}-{spec.trial_id}"


def run_config(spec: TrialSpec) -> dict:
    """The run's config: shape, block, parameter counts, recipe and the design's group."""
    return {
        "trial_id": spec.trial_id,
        "sweep": spec.sweep,
        "kind": spec.kind,
        "group": spec.group,
        "size_label": spec.size_label,
        "budget_flops": spec.budget_flops,
        "round": spec.round,
        "parent_trial_id": spec.parent_trial_id,
        "shape": dataclasses.asdict(spec.shape),
        "block": getattr(spec.shape, "block", "gpt"),
        "counts": spec.shape.param_counts(),
        "recipe": dataclasses.asdict(spec.train),
        "backend": "simulate" if spec.simulate else "torch",
    }


class CurveFeed:
    """Turns each Tune result of a trial into the items a tracker logs (module doc)."""

    def __init__(self, results_dir: str):
        self.store = Store(results_dir, create=False)
        self.fed: dict[str, int] = {}  # trial id -> last curve step handed out

    def items(self, spec: TrialSpec, result: dict) -> list[dict]:
        """The curve points since the last result of the trial `spec`, then the evaluation (the
        result), each with its index."""
        step = int(result.get("step") or 0)
        if spec.trial_id not in self.fed:
            self.fed[spec.trial_id] = self._logged_before(spec.trial_id, step)
        points = self._points(spec.trial_id, self.fed[spec.trial_id], step)
        if points:
            self.fed[spec.trial_id] = points[-1]["step"]
        out = [
            {**{f"curve/{k}": p[k] for k in CURVE_KEYS if p[k] is not None},
             "step": p["step"], "tokens": p["tokens"], TRAINING_ITERATION: 2 * p["step"]}
            for p in points
        ]
        return [*out, {**result, TRAINING_ITERATION: 2 * step + 1}]

    def _logged_before(self, trial_id: str, step: int) -> int:
        """A trial resumed in a new run of the study reported its evaluations before `step`
        (and the curve up to them) then: the last of those steps, 0 for a fresh trial."""
        return max((r["step"] for r in self.store.read_trial(trial_id) if r["step"] < step), default=0)

    def _points(self, trial_id: str, after: int, upto: int) -> list[dict]:
        data = self.store.read_bytes(self.store.path(CURVES_DIR, f"{trial_id}.parquet"))
        if not data:
            return []
        rows = read_curve_file(pa.BufferReader(data)).to_pylist()
        return [r for r in rows if after < r["step"] <= upto]
