"""Fit a curve law to whole loss curves, predict curves under unseen schedules, choose a law.

`CurveSet` holds evaluated points of runs (run, N, step, loss) and the schedule areas at each;
`fit_curves` fits one law through the shared engine (laws/engine.py: multi-start batched L-BFGS,
Huber delta 1e-3 on log L) and, with n_bootstrap > 0, refits it on resamples of whole runs
(laws/bootstrap.py: a run's evaluations are not independent draws). `law="auto"` fits both laws
on each run's first 75% of steps and keeps the one whose predicted tails (the last 25%) are
closer, and says so in `CurveFit.chosen`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.bootstrap import refit_resamples, run_weights
from scaling_orchestrator.analysis.laws.curves.forms import CurveColumns, CurveForm, curve_form
from scaling_orchestrator.analysis.laws.curves.schedule import Areas, areas
from scaling_orchestrator.analysis.laws.engine import fit_from_starts

AUTO = "auto"
CURVE_LAWS = ("lr_annealing", "multi_power")
MAX_POINTS_PER_RUN = 40   # evaluations of one run a fit reads (evenly spaced; the last kept)
TAIL_FRACTION = 0.25      # auto: the last quarter of each run's steps is held out


@dataclass(frozen=True)
class CurveSet:
    """Evaluated points of runs; every array has one entry per point."""

    run: np.ndarray
    params: np.ndarray
    step: np.ndarray
    loss: np.ndarray     # NaN where only a prediction is wanted
    areas: Areas

    @staticmethod
    def from_runs(runs) -> CurveSet:
        """runs: (run id, N, eta, steps, losses or None) per run; eta: schedule.py's per-step LR."""
        parts = []
        for run, n, eta, steps, losses in runs:
            steps = np.asarray(steps, int)
            loss = np.full(len(steps), np.nan) if losses is None else np.asarray(losses, float)
            parts.append((np.full(len(steps), run, dtype=object), np.full(len(steps), float(n)),
                          steps, loss, areas(eta, steps)))
        if not parts:
            raise NotFittable("no curves: no run has an evaluated step")
        return CurveSet(*(np.concatenate([p[i] for p in parts]) for i in range(4)),
                        Areas.concat([p[4] for p in parts]))

    @staticmethod
    def concat(parts) -> CurveSet:
        arrays = (np.concatenate([getattr(p, k) for p in parts]) for k in ("run", "params", "step", "loss"))
        return CurveSet(*arrays, Areas.concat([p.areas for p in parts]))

    def select(self, rows) -> CurveSet:
        return CurveSet(self.run[rows], self.params[rows], self.step[rows], self.loss[rows],
                        self.areas.select(rows))

    def columns(self, frame=None) -> CurveColumns:
        loss = np.where(np.isfinite(self.loss), self.loss, 1.0)
        return CurveColumns(self.params, loss, self.areas, frame)

    def thinned(self, per_run: int = MAX_POINTS_PER_RUN) -> CurveSet:
        """At most per_run evaluations of each run, evenly spaced, its last kept."""
        keep = []
        for run in np.unique(self.run):
            rows = np.flatnonzero(self.run == run)
            rows = rows[np.argsort(self.step[rows])]
            keep.append(rows[np.unique(np.linspace(0, len(rows) - 1, min(per_run, len(rows))).round()
                                       .astype(int))])
        return self.select(np.sort(np.concatenate(keep)))


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve law: its constants, the bootstrap rows over whole runs, how it was chosen."""

    form: CurveForm
    values: dict
    objective: float
    n_points: int
    n_runs: int
    samples: np.ndarray | None = None        # (R, p) constants of each resample
    chosen: str = ""                          # auto: which law and why
    ci95: dict = field(default_factory=dict)

    def predict(self, curves: CurveSet, values: dict | np.ndarray | None = None) -> np.ndarray:
        """Loss at every point of curves (their losses are not read)."""
        x = self.values if values is None else values
        row = np.array([[x[k] for k in self.form.constants]]) if isinstance(x, dict) else np.atleast_2d(x)
        cols = curves.columns()
        pred, _ = self.form.log_loss(self.form.to_inner(row, cols.frame), cols, jac=False)
        return np.exp(pred[0])

    def predict_samples(self, curves: CurveSet) -> np.ndarray:
        """(R, n) predictions, one row per finite bootstrap row."""
        cols = curves.columns()
        rows = self.samples[np.all(np.isfinite(self.samples), axis=1)]
        pred, _ = self.form.log_loss(self.form.to_inner(rows, cols.frame), cols, jac=False)
        return np.exp(pred)

    def to_dict(self) -> dict:
        samples = [] if self.samples is None else self.samples[np.all(np.isfinite(self.samples), 1)].tolist()
        return {"fittable": True, "law": self.form.name, "joint": self.form.joint,
                "formula": self.form.formula, "citation": self.form.citation, **self.values,
                "objective": self.objective, "n_points": self.n_points, "n_runs": self.n_runs,
                "chosen": self.chosen, "ci95": self.ci95, "samples": samples}

    @staticmethod
    def from_dict(plain: dict) -> CurveFit:
        form = curve_form(plain["law"], bool(plain.get("joint")))
        missing = [k for k in form.constants if plain.get(k) is None]
        if missing:
            raise ValueError(f"curve law: {', '.join(missing)} missing or not finite; "
                             "this fit cannot predict")
        samples = np.asarray(plain.get("samples") or [], float).reshape(-1, len(form.constants))
        return CurveFit(form, {k: float(plain[k]) for k in form.constants}, float(plain.get("objective", 0)),
                        int(plain.get("n_points", 0)), int(plain.get("n_runs", 0)),
                        samples if len(samples) else None, str(plain.get("chosen", "")),
                        dict(plain.get("ci95") or {}))


def curve_law_loss(law: str, values: dict, params: float, eta, steps) -> np.ndarray:
    """The joint curve law `law` with constants `values`: the loss of a run of N = params under
    the schedule eta (schedule.py) at each of steps."""
    fitted = CurveFit(curve_form(law, joint=True), values, 0.0, 0, 0)
    return fitted.predict(CurveSet.from_runs([("run", params, eta, steps, None)]))


def fit_curves(curves: CurveSet, law: str = "multi_power", *, joint: bool | None = None,
               n_bootstrap: int = 0, seed: int = 0, groups: dict | None = None) -> CurveFit:
    """Fit `law` (a curve law's name or "auto") to curves; joint: across sizes (default: when
    the curves hold more than one N). groups: {run: the unit the bootstrap draws} where runs
    share a draw (a branch and its trunk share their weights); default each run its own."""
    curves = curves.select(np.isfinite(curves.loss)).thinned()
    joint = len(np.unique(curves.params)) > 1 if joint is None else joint
    if law == AUTO:
        return choose_curve_law(curves, joint, n_bootstrap=n_bootstrap, seed=seed, groups=groups)
    form = curve_form(law, joint)
    if len(curves.loss) < 2 * len(form.constants):
        raise NotFittable(f"{len(curves.loss)} evaluated points; the {law} law has {len(form.constants)} "
                          f"constants and needs at least {2 * len(form.constants)}")
    cols = curves.columns()
    found = fit_from_starts(form, cols, form.starts)
    values = dict(zip(form.constants, (float(v) for v in form.to_outer(found.z, cols.frame)[0])))
    fitted = CurveFit(form, values, found.objective, len(cols), len(np.unique(curves.run)))
    if n_bootstrap <= 0:
        return fitted
    weights = run_weights(bootstrap_units(curves.run, groups), n_bootstrap, np.random.default_rng(seed))
    z, _, _ = refit_resamples(form.objective(cols), weights, found.z[None, :],
                              np.empty((0, len(found.z))), n_grid_starts=0)
    with np.errstate(all="ignore"):
        samples = form.to_outer(z, cols.frame)
    ok = samples[np.all(np.isfinite(samples), axis=1)]
    ci = {k: [float(v) for v in np.percentile(ok[:, i], [2.5, 97.5])] for i, k in enumerate(form.constants)
          } if len(ok) >= 10 else {}
    return CurveFit(form, values, found.objective, len(cols), fitted.n_runs, samples, ci95=ci)


def bootstrap_units(runs, groups: dict | None = None) -> np.ndarray:
    """The unit the whole-run bootstrap draws for each point: its run's group, else its run."""
    return np.array([str((groups or {}).get(r, r)) for r in runs])


def choose_curve_law(curves: CurveSet, joint: bool, *, n_bootstrap: int = 0, seed: int = 0,
                     groups: dict | None = None) -> CurveFit:
    """The law whose fit on each run's first 75% of steps predicts the last 25% best (mean
    |relative error|), refitted on everything; CurveFit.chosen says which and the errors."""
    last = {run: curves.step[curves.run == run].max() for run in np.unique(curves.run)}
    tail = curves.step > np.array([(1 - TAIL_FRACTION) * last[r] for r in curves.run])
    if tail.all() or not tail.any():
        raise NotFittable("--law auto: no run has evaluations both before and after 75% of its steps")
    errors = {}
    for name in CURVE_LAWS:
        try:
            head = fit_curves(curves.select(~tail), name, joint=joint)
            pred = head.predict(curves.select(tail))
            errors[name] = float(np.mean(np.abs(pred / curves.loss[tail] - 1)))
        except (NotFittable, ValueError):
            errors[name] = float("inf")
        if not np.isfinite(errors[name]):
            errors[name] = float("inf")
    best = min(errors, key=errors.get)
    said = ", ".join(f"{k} {100 * v:.2f}%" for k, v in errors.items())
    fitted = fit_curves(curves, best, joint=joint, n_bootstrap=n_bootstrap, seed=seed, groups=groups)
    return CurveFit(fitted.form, fitted.values, fitted.objective, fitted.n_points, fitted.n_runs,
                    fitted.samples, f"auto chose {best}: mean error on held-out run tails (last 25% of "
                    f"each run's steps) {said}", fitted.ci95)
