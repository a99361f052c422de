"""The `curve` method: the compute-optimal answer read from whole loss curves.

A joint curve law (laws/curves: L0(N) = E + A_N N^-alpha_N under Tissue et al.'s or Luo et
al.'s schedule terms) is fitted to every evaluation of every run, trunks and cooldowns included.
It then gives the final loss of a run of any size and token count under the study's reference
schedule (the recipe's: cosine to 10% with 5% warmup unless the spec says otherwise), so at any
budget C the IsoFLOP profile is L(N, T = C / (fpt(N) batch(N))) over a fine grid of N, and
N*(C), D*(C) = C / fpt(N*), L*(C) are its minimum (refined by the parabola through the grid
point and its neighbours). The grid spans the studied sizes / 8 to x 64 (a target 10x past the
largest budget wants a model ~3x past the largest size; an optimum at the grid's end is flagged);
fpt(N) is the sizes' own per-token FLOPs as a power law, the peak LR and batch the nearest
size's. Intervals: the same profile under every whole-run bootstrap row of the law (a run's
evaluations move together; a cooldown is drawn with its trunk). N* ~ C^a: the slope of log N* on
log C across the study's budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.curves.fit import CurveFit, CurveSet, fit_curves
from scaling_orchestrator.analysis.laws.curves.schedule import Areas, recipe_lr
from scaling_orchestrator.analysis.laws.curves.tables import row_curves, size_recipes

GRID_POINTS = 61
GRID_BELOW, GRID_ABOVE = 8.0, 64.0   # the profile's N grid: sizes / 8 .. sizes x 64
MIN_SIZES = 3
MAX_STEPS = 4096
MAX_BOOTSTRAP = 200   # whole-run resamples of a curve law (each a multi_power refit)


@dataclass(frozen=True)
class Sizes:
    """The studied sizes' recipes: N, exact FLOPs per token, tokens per step, peak LR."""

    params: np.ndarray
    flops_per_token: np.ndarray
    batch_tokens: np.ndarray
    lr: np.ndarray

    def fpt(self, N) -> np.ndarray:
        """FLOPs per token at N: a N + b N^(2/3) through the sizes' own counts (least squares).
        Why that form: at a fixed aspect ratio N ~ 12 L d^2 ~ d^3, so the 6N term goes as N and
        the attention logits' 6 L T d (Chinchilla App. F) as N^(2/3); a pure power law through
        small sizes misjudged fpt 3x past them enough to move N* by ~10%."""
        n = self.params
        basis = np.column_stack([n, n ** (2 / 3)])
        coef = np.linalg.lstsq(basis, self.flops_per_token, rcond=None)[0] if len(n) > 1 else [
            self.flops_per_token[0] / n[0], 0.0]
        N = np.asarray(N, float)
        return coef[0] * N + coef[1] * N ** (2 / 3)

    def nearest(self, N) -> np.ndarray:
        return np.abs(np.log(self.params)[None, :] - np.log(np.atleast_1d(N))[:, None]).argmin(1)


@dataclass(frozen=True)
class CurveMethod:
    """The fitted curve law and the compute-optimal allocations it implies."""

    law: CurveFit
    sizes: Sizes
    schedule: str = "cosine"
    budgets: tuple = ()
    a: float | None = None
    b: float | None = None
    ci95: dict = field(default_factory=dict)
    fittable: ClassVar[bool] = True

    def grid(self) -> np.ndarray:
        lo, hi = self.sizes.params.min() / GRID_BELOW, self.sizes.params.max() * GRID_ABOVE
        return np.geomspace(lo, hi, GRID_POINTS)

    def profile(self, C: float, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """(grid N, final loss (R, G) under the reference schedule at budget C) for the fit
        (rows None) or for bootstrap rows of constants."""
        grid = self.grid()
        near = self.sizes.nearest(grid)
        batch, lr = self.sizes.batch_tokens[near], self.sizes.lr[near]
        steps = np.maximum(np.round(C / (self.sizes.fpt(grid) * batch)), 1).astype(int)
        curves = final_points(grid, steps, lr, self.schedule)
        if rows is None:
            return grid, self.law.predict(curves)[None, :]
        cols = curves.columns()
        pred, _ = self.law.form.log_loss(self.law.form.to_inner(rows, cols.frame), cols, jac=False)
        return grid, np.exp(pred)

    def optimum(self, C: float, rows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(N*, D*, L*, at the grid's edge) per row: the profile's minimum, parabola-refined."""
        grid, loss = self.profile(C, rows)
        x = np.log10(grid)
        with np.errstate(all="ignore"):
            loss = np.where(np.isfinite(loss), loss, np.inf)
            i = np.clip(loss.argmin(1), 1, len(x) - 2)
            r = np.arange(len(loss))
            y0, y1, y2 = loss[r, i - 1], loss[r, i], loss[r, i + 1]
            h = x[1] - x[0]
            curv = y0 - 2 * y1 + y2
            shift = np.where(curv > 0, 0.5 * h * (y0 - y2) / curv, 0.0)
            x_opt = x[i] + np.clip(shift, -h, h)
            l_opt = y1 - 0.25 * (y0 - y2) * shift / h
        n_opt = 10 ** x_opt
        edge = (loss.argmin(1) == 0) | (loss.argmin(1) == len(x) - 1)
        return n_opt, C / self.sizes.fpt(n_opt), l_opt, edge

    def params_opt(self, C) -> float:
        return float(self.optimum(float(C))[0][0])

    def tokens_opt(self, C) -> float:
        return float(self.optimum(float(C))[1][0])

    def predict(self, C) -> float:
        """L*(C): the lowest final loss at budget C (the method's loss frontier)."""
        return float(self.optimum(float(C))[2][0])

    def interval(self, C: float) -> dict:
        """95% intervals of N*, D*, L* at C over the bootstrap rows (None without them)."""
        samples = self.law.samples
        rows = None if samples is None else samples[np.all(np.isfinite(samples), 1)]
        if rows is None or len(rows) < 10:
            return {"params": None, "tokens": None, "loss": None}
        n, d, loss, _ = self.optimum(C, rows)
        return {k: [float(q) for q in np.nanpercentile(v, [2.5, 97.5])]
                for k, v in (("params", n), ("tokens", d), ("loss", loss))}

    def to_dict(self) -> dict:
        return {"fittable": True, "law": self.law.to_dict(), "schedule": self.schedule, "a": self.a,
                "b": self.b, "ci95": self.ci95, "budgets": list(self.budgets),
                "sizes": {k: getattr(self.sizes, k).tolist() for k in
                          ("params", "flops_per_token", "batch_tokens", "lr")}}

    @staticmethod
    def from_dict(plain: dict) -> CurveMethod:
        sizes = Sizes(*(np.asarray(plain["sizes"][k], float) for k in
                        ("params", "flops_per_token", "batch_tokens", "lr")))
        return CurveMethod(CurveFit.from_dict(plain["law"]), sizes, plain.get("schedule", "cosine"),
                           tuple(plain.get("budgets") or ()), plain.get("a"), plain.get("b"),
                           dict(plain.get("ci95") or {}))


def final_points(params, steps, lr, schedule: str) -> CurveSet:
    """The last step of runs of `steps` steps under the schedule. Past MAX_STEPS steps the
    schedule is drawn at MAX_STEPS steps and its areas stretched by steps / MAX_STEPS: the
    recipe's schedules are one shape scaled in time (warmup a fraction of the steps), so the
    LR areas scale with time and the drops do not. Tissue's S2 is not stretched: its momentum
    forgets a drop after ~1/(1 - 0.999) = 1000 steps, so past a few thousand steps S2 no longer
    grows with the run's length (drawn at MAX_STEPS it is near that limit)."""
    parts = []
    for i, (n, t, peak) in enumerate(zip(params, steps, lr)):
        drawn = int(min(t, MAX_STEPS))
        part = CurveSet.from_runs([(i, n, recipe_lr(drawn, peak, schedule), [drawn], None)])
        f = t / drawn
        a = part.areas
        parts.append(CurveSet(part.run, part.params, np.array([int(t)]), part.loss,
                              Areas(a.s1 * f, a.s2, a.drop, a.drop_lr, a.drop_area * f)))
    return CurveSet.concat(parts)


def fit_curve_method(curves: CurveSet, sizes: Sizes, budgets, *, law: str = "multi_power",
                     schedule: str = "cosine", n_bootstrap: int = 0, seed: int = 0,
                     groups: dict | None = None) -> CurveMethod:
    """The curve method on every evaluation of the study's runs (module doc); groups: fit_curves'."""
    if len(sizes.params) < MIN_SIZES:
        raise NotFittable(f"the curve method needs curves of at least {MIN_SIZES} sizes; "
                          f"these runs have {len(sizes.params)}")
    fitted = fit_curves(curves, law, joint=True, n_bootstrap=n_bootstrap, seed=seed, groups=groups)
    method = CurveMethod(fitted, sizes, schedule)
    budgets = sorted(float(b) for b in budgets)
    rows = []
    for C in budgets:
        n, d, loss, edge = method.optimum(C)
        rows.append({"flops": C, "params_opt": float(n[0]), "tokens_opt": float(d[0]),
                     "loss_opt": float(loss[0]), "edge": bool(edge[0])})
    a, b, ci = exponents(method, budgets)
    return CurveMethod(fitted, sizes, schedule, tuple(rows), a, b, ci)


def exponents(method: CurveMethod, budgets) -> tuple[float | None, float | None, dict]:
    """(a, b) of N* ~ C^a, D* ~ C^b across the budgets (least squares in log-log), and their
    95% intervals over the bootstrap rows."""
    if len(budgets) < 2:
        return None, None, {}
    logc = np.log(budgets)
    best = [method.optimum(C) for C in budgets]
    a, b = (float(np.polyfit(logc, np.log([o[i][0] for o in best]), 1)[0]) for i in (0, 1))
    samples = method.law.samples
    rows = None if samples is None else samples[np.all(np.isfinite(samples), 1)]
    if rows is None or len(rows) < 10:
        return a, b, {}
    found = [method.optimum(C, rows) for C in budgets]
    ci = {}
    for name, i in (("a", 0), ("b", 1)):
        with np.errstate(all="ignore"):
            slopes = np.polyfit(logc, np.log(np.array([o[i] for o in found])), 1)[0]
        ci[name] = [float(q) for q in np.nanpercentile(slopes, [2.5, 97.5])]
    return a, b, ci


def curve_section(table, budgets, *, law: str = "multi_power", schedule: str = "cosine",
                  n_bootstrap: int = 0, seed: int = 0, without=(), folder=None,
                  recipes: dict | None = None) -> CurveMethod:
    """The curve method on our own result rows (laws/curves/tables.py reads each trial's
    schedule), leaving out the runs in `without` (the back-test's held-out runs)."""
    curves = row_curves(table, folder=folder, recipes=recipes)
    curves = curves.select(~np.isin(curves.run.astype(str), np.asarray(without, dtype=str)))
    recipes = size_recipes(table)
    kept = sorted(set(curves.params.tolist()))
    sizes = Sizes(*(np.array([recipes[n][i] if i >= 0 else n for n in kept]) for i in (-1, 0, 1, 2)))
    return fit_curve_method(curves, sizes, budgets, law=law, schedule=schedule,
                            n_bootstrap=min(n_bootstrap, MAX_BOOTSTRAP), seed=seed, groups=trunk_of(table))


def trunk_of(table) -> dict:
    """{branch trial: its trunk}: a cooldown shares its trunk's weights (and the trunk's noise),
    so the whole-run bootstrap draws a trunk with its cooldowns."""
    if "parent_trial_id" not in table.column_names:
        return {}
    runs = table.column("trial_id").to_pylist()
    parents = table.column("parent_trial_id").to_pylist()
    return {run: parent for run, parent in zip(runs, parents) if parent}
