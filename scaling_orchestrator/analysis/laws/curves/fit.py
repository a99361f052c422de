"""Fit a curve law to whole loss curves, predict curves under unseen schedules, choose a law.

`CurveSet` holds evaluated points of runs (run, N, step, loss) and the schedule areas at each;
`fit_curves` fits one law through the shared engine (laws/engine.py: multi-start batched L-BFGS,
Huber delta 1e-3 on log L) and, with n_bootstrap > 0, refits it on resamples of whole runs
(laws/bootstrap.py: a run's evaluations are not independent draws).

Burn-in: `burn_in` leaves out each run's evaluations before that share of its steps. Real runs
start with a transient the laws do not describe (the demo's 62k-parameter model sits on a
plateau near loss 6.0 for steps 30-60 of 300, then falls faster than any power of S1), and a
fit that must pass through it bends A and alpha away from the rest of the curve.

`law="auto"` holds points out, fits each law at each burn-in of BURN_INS on the rest, keeps the
pair whose predictions of the held-out points are closest (mean |relative error|), refits it on
everything (passing over a pair whose refit is not finite) and says which, and why, in
`CurveFit.chosen`. Held out: where two or more schedules anneal (a schedule: the runs of one
size, length and LR area), the last 25% of the longest such schedule's steps, that schedule
left out of the fit (a held-out schedule); else the last 25% of every run's steps (held-out
run tails).
"""

from __future__ import annotations

import itertools
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
TAIL_FRACTION = 0.25      # auto: the last quarter of a run's steps is held out
BURN_INS = (0.0, 0.1, 0.2, 0.3)   # auto: the burn-ins (shares of a run's steps left out) it tries


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

    def last_steps(self) -> np.ndarray:
        """The last evaluated step of each point's run."""
        runs, inverse = np.unique(self.run.astype(str), return_inverse=True)
        last = np.zeros(len(runs))
        np.maximum.at(last, inverse, self.step)
        return last[inverse]

    def burned(self, burn_in: float) -> CurveSet:
        """Without each run's evaluations before burn_in x its last step (module doc)."""
        return self if burn_in <= 0 else self.select(self.step >= burn_in * self.last_steps())

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
               n_bootstrap: int = 0, seed: int = 0, burn_in: float = 0.0,
               groups: dict | None = None) -> CurveFit:
    """Fit `law` (a curve law's name or "auto") to curves; joint: across sizes (default: when
    the curves hold more than one N); burn_in: the share of each run's steps whose evaluations
    are left out (auto chooses its own). groups: {run: the unit the bootstrap draws} where runs
    share a draw (a branch and its trunk share their weights); default each run its own."""
    curves = curves.select(np.isfinite(curves.loss))
    joint = len(np.unique(curves.params)) > 1 if joint is None else joint
    if law == AUTO:
        return choose_curve_law(curves, joint, n_bootstrap=n_bootstrap, seed=seed, groups=groups)
    curves = curves.burned(burn_in).thinned()
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
    """The law and burn-in whose fit predicts the held-out points best, refitted on everything;
    CurveFit.chosen says which, what was held out and each law's error (module doc)."""
    held, fitted_on, what = held_out(curves)
    last = curves.last_steps()
    errors = {}
    for name, burn_in in itertools.product(CURVE_LAWS, BURN_INS):
        try:   # the burn-in counted in the whole run's steps, as in the final fit
            head = fit_curves(curves.select(fitted_on & (curves.step >= burn_in * last)), name, joint=joint)
            pred = head.predict(curves.select(held))
            error = float(np.mean(np.abs(pred / curves.loss[held] - 1)))
        except (NotFittable, ValueError):
            error = float("inf")
        errors[name, burn_in] = error if np.isfinite(error) else float("inf")
    said = ", ".join(f"{name} {100 * v:.2f}% (burn-in {b:.0%})" for name in CURVE_LAWS
                     for b, v in [min(((b, errors[name, b]) for b in BURN_INS), key=lambda x: x[1])])
    skipped = []
    for best, burn_in in sorted((k for k in errors if np.isfinite(errors[k])), key=errors.get):
        fitted = fit_curves(curves, best, joint=joint, burn_in=burn_in)
        if np.isfinite(list(fitted.values.values())).all() and np.isfinite(fitted.predict(curves)).all():
            break
        skipped.append(f"{best} at burn-in {burn_in:.0%}")
    else:
        raise NotFittable(f"--law auto: no curve law predicts {what} with finite constants")
    if n_bootstrap > 0:
        fitted = fit_curves(curves, best, joint=joint, n_bootstrap=n_bootstrap, seed=seed, burn_in=burn_in,
                            groups=groups)
    passed = f" (passed over, its fit on every point not finite: {', '.join(skipped)})" if skipped else ""
    return CurveFit(fitted.form, fitted.values, fitted.objective, fitted.n_points, fitted.n_runs,
                    fitted.samples, f"auto chose {best}, burn-in {burn_in:.0%} of each run's steps: mean "
                    f"error on {what} {said}{passed}", fitted.ci95)


def held_out(curves: CurveSet) -> tuple[np.ndarray, np.ndarray, str]:
    """(points auto predicts, points it fits on, what they are): a held-out schedule where two
    or more runs anneal, else held-out run tails (module doc)."""
    last = curves.last_steps()
    tail = curves.step > (1 - TAIL_FRACTION) * last
    runs = curves.run.astype(str)
    # a schedule: runs of one size, length and LR area (a run's evaluations and its train losses)
    end = curves.step == last
    key = {r: (n, t, float(f"{s1:.9g}")) for r, n, t, s1 in
           zip(runs[end], curves.params[end], curves.step[end], curves.areas.s1[end])}
    annealed = sorted({key[r] for r in np.unique(runs) if curves.areas.drop[runs == r].any()})
    if len(annealed) >= 2:
        longest = max(annealed, key=lambda k: k[1])
        mine = np.array([key[r] == longest for r in runs])
        return mine & tail, ~mine, (f"the held-out schedule of run {runs[mine][0]} (the last "
                                    f"{TAIL_FRACTION:.0%} of its steps, the run not fitted)")
    if tail.all() or not tail.any():
        raise NotFittable("--law auto: no run has evaluations both before and after 75% of its steps")
    return tail, ~tail, f"held-out run tails (the last {TAIL_FRACTION:.0%} of each run's steps)"
