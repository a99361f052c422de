"""The `curve` method: the compute-optimal answer read from whole loss curves.

A joint curve law (laws/curves: Tissue et al.'s or Luo et al.'s schedule terms, its floor
L0(N) = E + A_N N^-alpha_N; `auto` picks the law and burn-in that predict a held-out schedule
best) is fitted to every evaluation of every run, trunks and cooldowns included. It is trusted
with the schedule, not with N:

1. each evaluation is translated to the loss a constant-LR run would have at that step
   (laws/curves/translate.py; a trunk's own evaluations barely move, a cooldown's lose their
   annealing gain); where the runs open with a transient (start_share) only those from
   START_SHARE of each run's steps on are read;
2. Chinchilla's parametric law (Approach 3's engine) is fitted to those points at D = steps x
   tokens per step: under a constant LR the joint law IS Chinchilla's form (S1 = eta T), so on a
   known joint law this recovers it, and on real curves the N dependence is the well-studied
   separable one, not the curve law's floor;
3. at budget C the IsoFLOP profile over a grid of N is that law at D = C / fpt(N) times the curve
   law's ratio of the reference schedule's final loss to the constant LR's at that step count
   (the recipe's schedule: cosine to 10% with 5% warmup unless the spec says otherwise); N*, D*,
   L* are its minimum, parabola-refined. The grid spans the sizes / 8 to x 64 (an optimum at its
   end is flagged); fpt(N) is the sizes' own per-token FLOPs, the peak LR and batch the nearest
   size's.

Intervals: the same profile under every run-bootstrap row of step 2's fit (a run's evaluations
are drawn together, a cooldown with its trunk); the translation and the ratio are held at the
point fit (their own uncertainty is not in the intervals). N* ~ C^a: the slope of log N* on log
C across the study's budgets. Why not the joint law's own profile: extrapolated in N it missed the
demo's real held-out budget by -63% in N* (laws/curves/translate.py). Where the joint law is the
truth (a simulated study, a test), `CurveMethod` without an answer reads the law's own profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.curves.fit import CurveFit, CurveSet, bootstrap_units, fit_curves
from scaling_orchestrator.analysis.laws.curves.schedule import Areas, recipe_lr
from scaling_orchestrator.analysis.laws.curves.tables import row_curves, size_recipes
from scaling_orchestrator.analysis.laws.curves.translate import START_SHARE, read_points, translated_loss
from scaling_orchestrator.analysis.laws.registry import ParametricResult, fit_law, law_form

GRID_POINTS = 61
GRID_BELOW, GRID_ABOVE = 8.0, 64.0   # the profile's N grid: sizes / 8 .. sizes x 64
MIN_SIZES = 3
MAX_STEPS = 4096
MAX_BOOTSTRAP = 200   # run resamples of the answer's parametric fit
ANSWER_FORM = "chinchilla"
CONSTANT = "constant"
TRANSIENT_GAP = 0.03     # mean log-loss gap of runs' first evaluations to their later ones: a transient


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
    """The fitted curve law, the parametric law on its translated evaluations (the answer), and
    the compute-optimal allocations they imply (module doc)."""

    law: CurveFit
    sizes: Sizes
    schedule: str = "cosine"
    budgets: tuple = ()
    a: float | None = None
    b: float | None = None
    ci95: dict = field(default_factory=dict)
    answer: ParametricResult | None = None   # None: the joint law's own profile (a known truth)
    start: tuple = (0.0, "")                 # (share of each run's steps read from, why)
    fittable: ClassVar[bool] = True

    def grid(self) -> np.ndarray:
        lo, hi = self.sizes.params.min() / GRID_BELOW, self.sizes.params.max() * GRID_ABOVE
        return np.geomspace(lo, hi, GRID_POINTS)

    def rows(self) -> np.ndarray | None:
        """The bootstrap rows intervals are read from (finite ones; None with fewer than 10)."""
        samples = self.law.samples if self.answer is None else self.answer.samples
        rows = None if samples is None else samples[np.all(np.isfinite(samples), 1)]
        return rows if rows is not None and len(rows) >= 10 else None

    def profile(self, C: float, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """(grid N, final loss (R, G) under the reference schedule at budget C) for the fit
        (rows None) or for bootstrap rows of constants."""
        grid = self.grid()
        near = self.sizes.nearest(grid)
        batch, lr = self.sizes.batch_tokens[near], self.sizes.lr[near]
        steps = np.maximum(np.round(C / (self.sizes.fpt(grid) * batch)), 1).astype(int)
        reference = final_points(grid, steps, lr, self.schedule)
        if self.answer is not None:
            ratio = self.law.predict(reference) / self.law.predict(final_points(grid, steps, lr, CONSTANT))
            form = self.answer.form
            values = self.answer.law.values if rows is None else {
                k: v[:, None] for k, v in zip(form.constants, np.asarray(rows).T)}
            return grid, np.atleast_2d(form.predict_values(values, grid, steps * batch)) * ratio
        if rows is None:
            return grid, self.law.predict(reference)[None, :]
        cols = reference.columns()
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
        rows = self.rows()
        if rows is None:
            return {"params": None, "tokens": None, "loss": None}
        n, d, loss, _ = self.optimum(C, rows)
        return {k: [float(q) for q in np.nanpercentile(v, [2.5, 97.5])]
                for k, v in (("params", n), ("tokens", d), ("loss", loss))}

    def to_dict(self) -> dict:
        return {"fittable": True, "law": self.law.to_dict(), "schedule": self.schedule, "a": self.a,
                "b": self.b, "ci95": self.ci95, "budgets": list(self.budgets),
                "start_share": self.start[0], "start": self.start[1],
                "answer": None if self.answer is None else self.answer.to_dict(),
                "sizes": {k: getattr(self.sizes, k).tolist() for k in
                          ("params", "flops_per_token", "batch_tokens", "lr")}}

    @staticmethod
    def from_dict(plain: dict) -> CurveMethod:
        sizes = Sizes(*(np.asarray(plain["sizes"][k], float) for k in
                        ("params", "flops_per_token", "batch_tokens", "lr")))
        answer = plain.get("answer")
        return CurveMethod(CurveFit.from_dict(plain["law"]), sizes, plain.get("schedule", "cosine"),
                           tuple(plain.get("budgets") or ()), plain.get("a"), plain.get("b"),
                           dict(plain.get("ci95") or {}), answer and ParametricResult.from_dict(answer),
                           (float(plain.get("start_share") or 0.0), str(plain.get("start") or "")))


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


def fit_curve_method(curves: CurveSet, sizes: Sizes, budgets, *, law: str = "auto",
                     schedule: str = "cosine", n_bootstrap: int = 0, seed: int = 0,
                     groups: dict | None = None) -> CurveMethod:
    """The curve method on every evaluation of the study's runs (module doc); groups: fit_curves'."""
    if len(sizes.params) < MIN_SIZES:
        raise NotFittable(f"the curve method needs curves of at least {MIN_SIZES} sizes; "
                          f"these runs have {len(sizes.params)}")
    curves = curves.select(np.isfinite(curves.loss))
    fitted = fit_curves(curves, law, joint=True, seed=seed)
    budgets = sorted(float(b) for b in budgets)
    near = sizes.nearest(curves.params)
    constant = translated_loss(curves, fitted, final_points, sizes.lr[near], CONSTANT)
    tokens = curves.step * sizes.batch_tokens[near]
    start = start_share(curves, constant, tokens)
    keep = read_points(curves, start[0])
    units = bootstrap_units(curves.run[keep].astype(str), groups)
    answer = fit_law(law_form(ANSWER_FORM), curves.params[keep], tokens[keep], constant[keep], units,
                     n_bootstrap=n_bootstrap, seed=seed, flops_per_token=sizes.fpt)
    if not answer.fittable:
        raise NotFittable(f"the parametric law on the translated evaluations: {answer.reason}")
    method = CurveMethod(fitted, sizes, schedule, answer=answer)
    rows = []
    for C in budgets:
        n, d, loss, edge = method.optimum(C)
        rows.append({"flops": C, "params_opt": float(n[0]), "tokens_opt": float(d[0]),
                     "loss_opt": float(loss[0]), "edge": bool(edge[0])})
    a, b, ci = exponents(method, budgets)
    return CurveMethod(fitted, sizes, schedule, tuple(rows), a, b, ci, answer, start)


def start_share(curves: CurveSet, loss: np.ndarray, tokens: np.ndarray) -> tuple[float, str]:
    """(share, why): the evaluations step 2 reads (loss: translated to a constant LR). Every
    one, unless the runs open with a transient the laws do not describe: the law fitted to the
    evaluations from START_SHARE of each run's steps on misses the earlier ones by more than
    TRANSIENT_GAP in log loss (a run's earlier residuals less its later ones, averaged over the
    runs that have both); then it reads from there. The demo's two trunks draws: -0.117 and
    -0.048 (its small models sit on a plateau, then fall faster than any power law; read whole,
    N* -59% on both); simulated studies of a joint law with 1% run noise: -0.003 to -0.014."""
    late = read_points(curves, START_SHARE)
    try:
        law = law_form(ANSWER_FORM).fit(curves.params[late], tokens[late], loss[late])
    except (NotFittable, ValueError):
        return 0.0, "every evaluation (the law on the later ones alone could not be fitted)"
    with np.errstate(all="ignore"):
        residual = np.log(loss) - np.log(law.predict(curves.params, tokens))
    runs = curves.run.astype(str)
    gaps = [residual[mine & ~late].mean() - residual[mine & late].mean()
            for mine in (runs == r for r in np.unique(runs)) if (mine & ~late).any() and (mine & late).any()]
    gap = float(np.mean(gaps)) if gaps else 0.0
    if abs(gap) > TRANSIENT_GAP:
        return START_SHARE, (f"evaluations from {START_SHARE:.0%} of each run's steps on: the earlier ones "
                             f"sit {gap:+.3f} in log loss off the law the later ones follow (an early "
                             "transient the curve laws do not describe)")
    return 0.0, (f"every evaluation: each run's first {START_SHARE:.0%} sit {gap:+.3f} in log loss off the "
                 f"law its later ones follow (at most {TRANSIENT_GAP} apart)")


def exponents(method: CurveMethod, budgets) -> tuple[float | None, float | None, dict]:
    """(a, b) of N* ~ C^a, D* ~ C^b across the budgets (least squares in log-log), and their
    95% intervals over the bootstrap rows."""
    if len(budgets) < 2:
        return None, None, {}
    logc = np.log(budgets)
    best = [method.optimum(C) for C in budgets]
    a, b = (float(np.polyfit(logc, np.log([o[i][0] for o in best]), 1)[0]) for i in (0, 1))
    rows = method.rows()
    if rows is None:
        return a, b, {}
    found = [method.optimum(C, rows) for C in budgets]
    ci = {}
    for name, i in (("a", 0), ("b", 1)):
        with np.errstate(all="ignore"):
            slopes = np.polyfit(logc, np.log(np.array([o[i] for o in found])), 1)[0]
        ci[name] = [float(q) for q in np.nanpercentile(slopes, [2.5, 97.5])]
    return a, b, ci


def curve_section(table, budgets, *, law: str = "auto", schedule: str = "cosine",
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
