"""Compute-optimal recommendations (N*, D*, L*) per target budget and method.

- parametric: argmin over N of L(N, C / fpt(N)) with fpt read off the table (6N under 6ND,
  the exact per-token count otherwise); ci95 from the run bootstrap's rows at that C.
- isoflop / envelope: N* = k C^a, D* = k' C^b; loss = E + A C^-alpha fitted to that method's
  own minima (parabola vertices / envelope); ci95 for N*, D* from the within-budget run
  bootstrap (isoflop only), loss interval not estimated (null).
A method that cannot run gives one row per target saying why, so a reader can tell "not
possible on this data" from "not attempted". Default targets: 3x, 10x and 100x the largest
budget studied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from scaling_orchestrator.analysis.data.points import final_rows
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.single_variable import Frontier, fit_frontier
from scaling_orchestrator.analysis.numerics import number

METHODS = ("parametric", "isoflop", "envelope", "curve")


def _plain(x):
    """A numpy scalar as the Python float it holds; None and Python numbers unchanged."""
    return float(x) if isinstance(x, np.generic) else x
# Default targets, as multiples of the largest budget studied: 4.2e12 -> 1.26e13, 4.2e13, 4.2e14.
TARGET_MULTIPLES = (3, 10, 100)


@dataclass(frozen=True)
class Recommendation:
    """(N*, D*, L*) at `flops` by one method; reason says why not when it cannot say."""

    flops: float
    method: str
    params: float | None = None
    tokens: float | None = None
    loss: float | None = None
    ci95: dict = field(default_factory=dict)   # "params" / "tokens" / "loss" -> [lo, hi] | None
    reason: str = ""

    def __post_init__(self):
        """Plain Python floats in every number (a printed Recommendation shows 4.3e9, never
        np.float64(4.3e9))."""
        for name in ("flops", "params", "tokens", "loss"):
            object.__setattr__(self, name, _plain(getattr(self, name)))
        object.__setattr__(self, "ci95", {k: None if ci is None else [_plain(v) for v in ci]
                                          for k, ci in self.ci95.items()})

    @property
    def fittable(self) -> bool:
        return not self.reason

    def to_dict(self) -> dict:
        if self.reason:
            return {"flops": self.flops, "method": self.method, "fittable": False,
                    "reason": self.reason}
        return {"flops": self.flops, "method": self.method, "params": self.params,
                "tokens": self.tokens, "loss": self.loss,
                "ci95": {k: self.ci95.get(k) for k in ("params", "tokens", "loss")}}

    @classmethod
    def from_dict(cls, d: dict) -> Recommendation:
        if not d.get("fittable", True):
            return cls(float(d["flops"]), d["method"], reason=d["reason"])
        return cls(float(d["flops"]), d["method"], number(d["params"]), number(d["tokens"]),
                   d.get("loss"), dict(d.get("ci95") or {}))


def flops_per_token_model(points) -> Callable[[float], float] | None:
    """FLOPs per token as a function of N, read off the table (_per_token_law).

    Under 6ND it returns 6N; under the exact Appendix F count it carries the attention and
    embedding terms the table recorded, so compute_optimal stays in the table's convention.
    None when the table's C/D is not a clean function of N (then 6N is used)."""
    rows = final_rows(points)
    N = np.asarray(points.params, float)[rows]
    per_token = np.asarray(points.flops, float)[rows] / np.asarray(points.tokens, float)[rows]
    return _per_token_law(N, per_token)


def flops_per_token_of_rows(rows) -> Callable[[float], float] | None:
    """The same model read back off parametric Recommendations (D* = C / fpt(N*) at each):
    what a fit read from fit.json, which keeps no table, computes D* with. The rows lie on the
    model exactly, so the fit recovers it to rounding; 6N (None) from fewer than 2 sizes."""
    N = np.array([r.params for r in rows if r.fittable], float)
    per_token = np.array([r.flops / r.tokens for r in rows if r.fittable], float)
    return _per_token_law(N, per_token)


# fpt(N) = k N + c1 N^(2/3) + c2 N^(1/3), every coefficient >= 0: a dense Transformer's count
# is the weights' k N plus lower-order terms (attention's n_layer n_ctx d grows as N^(2/3) at a
# fixed aspect ratio, per-width terms as N^(1/3)), so the cost per parameter falls toward k and
# never below it. A single power law c N^s fitted over the sizes trained (s = 0.92 on
# examples/simulated.yaml, where fpt / 6N runs from 1.72 down to 1.05) keeps falling past them
# and put the parametric N* 11% above the law's at 3x the largest budget and 20% above at 100x;
# this model is within 2% there (its fpt within 1.2% of the exact count over the sizes trained).
FPT_POWERS = (1.0, 2.0 / 3.0, 1.0 / 3.0)
FPT_CLEAN = 0.05     # rms of log(model / table) above this: C/D is not a function of N


def _per_token_law(N: np.ndarray, per_token: np.ndarray) -> Callable[[float], float] | None:
    """fpt(N) by non-negative least squares in relative error on FPT_POWERS, or a power law
    c N^s (OLS in log-log), whichever follows the table more closely (a table written as
    6.6 N^1.01 keeps its power law); None when neither is within FPT_CLEAN."""
    ok = np.isfinite(per_token) & (per_token > 0) & np.isfinite(N) & (N > 0)
    N, per_token = N[ok], per_token[ok]
    if len(N) < 2 or np.ptp(np.log(N)) == 0:
        return None
    columns = np.column_stack([N ** q for q in FPT_POWERS]) / per_token[:, None]
    scale = np.linalg.norm(columns, axis=0)
    coef = nnls(columns / scale, np.ones(len(N)))[0] / scale
    s, c = np.polyfit(np.log(N), np.log(per_token), 1)
    models = (lambda n: float(sum(k * n ** q for k, q in zip(coef, FPT_POWERS))),
              lambda n: float(np.exp(c + s * np.log(n))))
    misfit = [_rms_log_misfit(model, N, per_token) for model in models]
    best = int(np.argmin(misfit))
    return models[best] if misfit[best] <= FPT_CLEAN else None


def _rms_log_misfit(model, N: np.ndarray, per_token: np.ndarray) -> float:
    fitted = np.array([model(n) for n in N])
    if not np.all(fitted > 0):
        return np.inf
    return float(np.sqrt(np.mean(np.log(per_token / fitted) ** 2)))


def check_targets(target_flops) -> tuple[float, ...]:
    targets = tuple(float(c) for c in target_flops)
    bad = [c for c in targets if not (math.isfinite(c) and c > 0)]
    if bad:
        raise ValueError(f"target_flops: {bad[0]!r} is not a finite positive FLOP count")
    return targets


def default_targets(budgets) -> tuple[float, ...]:
    """TARGET_MULTIPLES of the largest budget: the next study (3x), one decade (10x) and two
    (100x). `scaling fit`, `scaling report` and `scaling demo` all default to these."""
    return tuple(float(m * max(budgets)) for m in TARGET_MULTIPLES)


def band_grid(budgets, targets, n: int = 12) -> list[float]:
    """Log-spaced FLOP values from the smallest budget to the largest target, for plots."""
    lo, hi = math.log10(min(budgets)), math.log10(max(max(targets), max(budgets)))
    return [float(10 ** x) for x in np.linspace(lo, hi, n)]


def parametric_rows(par, targets, fpt, *, band: bool = False) -> list[Recommendation]:
    """Targets take the bootstrap's intervals (in the table's FLOP convention); the plot band
    (band=True) reads Chinchilla Eq. 4 under 6ND on every bootstrap row, vectorised."""
    if not par.fittable:
        return []
    reason = par.form.no_optimum(par.law)
    if reason:
        return [Recommendation(C, "parametric", reason=reason) for C in targets]
    kept = None if par.samples is None else par.form.finite_samples(par.samples)
    rows = []
    for C in targets:
        n, d, loss = (float(np.asarray(v).ravel()[0]) for v in par.law.compute_optimal(C, fpt))
        ci = {}
        if par.samples is not None:
            ci = par.form.band(par.samples, C) if band else par.form.optimal_interval(kept, C, fpt)
        rows.append(Recommendation(C, "parametric", n, d, loss,
                                   {"params": ci.get("params_ci"), "tokens": ci.get("tokens_ci"),
                                    "loss": ci.get("loss_ci")}))
    return rows


def loss_frontier(method: str, fit) -> Frontier | None:
    """L*(C) = E + A C^-alpha through the method's own minima; None when it cannot be fitted."""
    return frontier_or_reason(method, fit)[0]


def frontier_or_reason(method: str, fit) -> tuple[Frontier | None, str]:
    """(the loss frontier, "") or (None, why not): isoflop through its budgets' vertices,
    envelope through its interior envelope points."""
    if not fit.fittable:
        return None, fit.reason
    if method == "isoflop":
        minima = [(o.flops, o.loss_opt) for o in fit.budgets if o.fittable]
    else:
        minima = list(zip(fit.grid_flops[fit.used], fit.loss[fit.used]))
    try:
        return fit_frontier(*map(np.array, zip(*minima))), ""
    except (NotFittable, ValueError) as exc:
        return None, f"its loss frontier: {exc}"


def law_rows(method: str, fit, frontier: Frontier | None, targets) -> list[Recommendation]:
    """N*, D* from the method's power laws, L* from its loss frontier."""
    if not fit.fittable:
        return []
    samples = getattr(fit, "samples", None)
    rows = []
    for C in targets:
        ci = {"params": None, "tokens": None, "loss": None}
        if samples is not None and len(samples) >= 10:
            ci["params"] = list(np.percentile(samples[:, 2] * C ** samples[:, 0], [2.5, 97.5]))
            ci["tokens"] = list(np.percentile(samples[:, 3] * C ** samples[:, 1], [2.5, 97.5]))
        rows.append(Recommendation(C, method, float(fit.params_opt(C)), float(fit.tokens_opt(C)),
                                   None if frontier is None else float(frontier.predict(C)), ci))
    return rows


def recommend(sections: dict, frontiers: dict, targets, fpt) -> tuple[Recommendation, ...]:
    """Every method's rows at the targets: sections and frontiers map method -> fit."""
    rows = parametric_rows(sections["parametric"], targets, fpt)
    for method in ("isoflop", "envelope"):
        rows += law_rows(method, sections[method], frontiers.get(method), targets)
    rows += curve_rows(sections["curve"], targets)
    for method in METHODS:   # a method that cannot run says why, once per target
        if not sections[method].fittable:
            rows += [Recommendation(C, method, reason=sections[method].reason) for C in targets]
    return tuple(rows)


def frontier_grid(sections: dict, frontiers: dict, grid, fpt) -> dict:
    """method -> rows on the plot grid (the parametric band from every bootstrap row)."""
    return {"parametric": tuple(parametric_rows(sections["parametric"], grid, fpt, band=True)),
            **{m: tuple(law_rows(m, sections[m], frontiers.get(m), grid))
               for m in ("isoflop", "envelope")},
            "curve": tuple(curve_rows(sections["curve"], grid, intervals=False))}


def curve_rows(fit, targets, *, intervals: bool = True) -> list[Recommendation]:
    """The curve method's N*, D*, L* at each target: its IsoFLOP profile's minimum under the
    reference schedule, ci95 over its whole-run bootstrap rows (methods/curve.py)."""
    if not fit.fittable:
        return []
    rows = []
    for C in targets:
        n, d, loss = fit.params_opt(C), fit.tokens_opt(C), fit.predict(C)
        ci = fit.interval(C) if intervals else {"params": None, "tokens": None, "loss": None}
        rows.append(Recommendation(C, "curve", n, d, loss, ci))
    return rows
