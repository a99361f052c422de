"""Approach 2 of Hoffmann et al. 2022 (Chinchilla, Sec. 3.2): IsoFLOP profiles.

For each FLOP budget, loss is a valley in log N. The window parabola of parabola.py
is fitted in log10 N through the points NEAR the lowest observed loss (the `window`, default 5,
distinct sizes nearest it), not through all of them: a global parabola biases the exponent
(Porian et al. 2024 Sec. 3, App. C: by up to +0.35 on their untuned configs, where the 5-point
window lands within 0.02 of their Table 1).

A budget whose lowest observed loss sits at its smallest or largest N, or whose parabola's
vertex lies past every size trained even with the window at its widest, is flagged `edge`: its
minimum lies outside the grid, the vertex is an extrapolation, and it is left out of the power
law. Then N*(C) = k C^a and D*(C) = k' C^b are ordinary least squares in log10-log10 over the
interior budgets.

D* comes from the budget's own (N, D) pairs: log D is interpolated linearly in log N across the
window and read at N*. Under flops = 6ND this is exactly C / (6 N*); under the exact count
(Chinchilla App. F) it honours the per-token cost the table recorded instead of assuming 6N.
With `axis="tokens"` the parabola is fitted in log D and N* is read off the same way (use it
when a source gives only C and D, as the Llama 3 Figure 2 points do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from scaling_orchestrator.analysis.data.points import final_rows
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.isoflop_bootstrap import bootstrap_rows
from scaling_orchestrator.analysis.methods.parabola import MIN_VALUES as MIN_POINTS
from scaling_orchestrator.analysis.methods.parabola import polyfit, window_parabola
from scaling_orchestrator.analysis.methods.powerlaw import powerlaw_fit
from scaling_orchestrator.analysis.numerics import number

DEFAULT_WINDOW = 5


@dataclass(frozen=True)
class BudgetOptimum:
    """The parabola vertex for one budget (params/tokens/loss at the vertex)."""

    flops: float
    n_points: int
    fittable: bool
    reason: str = ""
    params_opt: float = float("nan")
    tokens_opt: float = float("nan")
    loss_opt: float = float("nan")
    edge: bool = False
    window: int = 0
    curvature: float = float("nan")  # d2 loss / d(log10 x)^2 at the vertex
    parabola: tuple = ()  # (c2, c1, c0, log10 x_lo, log10 x_hi) in log10 of `axis`, for plots

    def to_dict(self) -> dict:
        out = {"flops": self.flops, "params_opt": self.params_opt, "tokens_opt": self.tokens_opt,
               "loss_opt": self.loss_opt, "edge": self.edge, "n_points": self.n_points,
               "fittable": self.fittable}
        if self.reason:
            out["reason"] = self.reason
        if self.parabola:
            out["parabola"] = dict(zip(("c2", "c1", "c0", "log10_x_lo", "log10_x_hi"),
                                       map(float, self.parabola)))
        return {k: _plain(v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, d: dict) -> BudgetOptimum:
        parabola = d.get("parabola") or {}
        return cls(float(d["flops"]), int(d["n_points"]), bool(d["fittable"]), d.get("reason", ""),
                   number(d.get("params_opt")), number(d.get("tokens_opt")), number(d.get("loss_opt")),
                   bool(d.get("edge", False)), parabola=tuple(number(v) for v in parabola.values()))


@dataclass(frozen=True)
class IsoflopFit:
    """N* = k_params C^a and D* = k_tokens C^b over the interior budgets."""

    a: float
    b: float
    k_params: float
    k_tokens: float
    budgets: tuple[BudgetOptimum, ...]
    axis: str
    window: int
    ci95: dict = field(default_factory=dict)  # {"a": [lo, hi], "b": [lo, hi]} when bootstrapped
    samples: np.ndarray | None = None          # bootstrap rows (a, b, k_params, k_tokens)
    fittable: ClassVar[bool] = True

    def params_opt(self, flops) -> np.ndarray:
        return self.k_params * np.asarray(flops, dtype=float) ** self.a

    def tokens_opt(self, flops) -> np.ndarray:
        return self.k_tokens * np.asarray(flops, dtype=float) ** self.b

    @property
    def interior(self) -> tuple[BudgetOptimum, ...]:
        return tuple(o for o in self.budgets if o.fittable and not o.edge)

    def to_dict(self) -> dict:
        return {"fittable": True, "a": float(self.a), "b": float(self.b),
                "k_params": float(self.k_params), "k_tokens": float(self.k_tokens),
                "axis": self.axis, "window": self.window, "n_interior": len(self.interior),
                "budgets": [o.to_dict() for o in self.budgets],
                "ci95": {k: [float(v[0]), float(v[1])] for k, v in self.ci95.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> IsoflopFit:
        """The fit as fit.json holds it: no bootstrap rows (its intervals of a and b stay)."""
        return cls(float(d["a"]), float(d["b"]), float(d["k_params"]), float(d["k_tokens"]),
                   tuple(BudgetOptimum.from_dict(o) for o in d["budgets"]), d["axis"], int(d["window"]),
                   {k: [number(v[0]), number(v[1])] for k, v in (d.get("ci95") or {}).items()})


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def fit_budget(flops: float, params, tokens, loss, *, axis: str = "params",
               window: int = DEFAULT_WINDOW) -> BudgetOptimum:
    """Parabola in log10(axis) through the `window` points nearest the lowest loss."""
    n = len(loss)
    if n < MIN_POINTS:
        return BudgetOptimum(flops, n, False, f"{n} point(s); a parabola needs {MIN_POINTS}")
    x_main, x_other = (params, tokens) if axis == "params" else (tokens, params)
    order = np.argsort(x_main)
    lx, lo, loss = np.log10(x_main[order]), np.log10(x_other[order]), np.asarray(loss)[order]
    distinct = np.unique(lx)
    if len(distinct) < MIN_POINTS:
        return BudgetOptimum(flops, n, False, f"fewer than {MIN_POINTS} distinct {axis} values")
    edge = lx[int(np.argmin(loss))] in (lx[0], lx[-1])
    fit = window_parabola(lx, loss, window, distinct)
    if not fit.convex:
        return BudgetOptimum(flops, n, False, "loss is not convex in log " + axis, edge=edge)
    x_star, idx = fit.x_opt, fit.rows
    edge = edge or not lx[0] <= x_star <= lx[-1]   # a vertex past every size trained: extrapolated
    slope, icpt = polyfit(lx[idx], lo[idx], 1)  # log other vs log main, locally linear
    main_opt, other_opt = 10.0 ** x_star, 10.0 ** (icpt + slope * x_star)
    n_opt, d_opt = (main_opt, other_opt) if axis == "params" else (other_opt, main_opt)
    return BudgetOptimum(flops, n, True, "", float(n_opt), float(d_opt), float(fit.y_opt),
                         bool(edge), fit.window, float(fit.curvature), fit.coefficients)


def _budget_groups(points, rows: np.ndarray) -> list[tuple[float, np.ndarray]]:
    budget = np.asarray(points.budget, dtype=float)[rows]
    return [(float(b), rows[budget == b]) for b in np.unique(budget)]


def _optima(points, groups, axis, window) -> tuple[BudgetOptimum, ...]:
    N, D, L = (np.asarray(points.params, float), np.asarray(points.tokens, float),
               np.asarray(points.loss, float))
    return tuple(fit_budget(b, N[g], D[g], L[g], axis=axis, window=window) for b, g in groups)


def _law(optima) -> tuple[float, float, float, float]:
    inner = [o for o in optima if o.fittable and not o.edge]
    if len({o.flops for o in inner}) < 2:
        raise NotFittable(f"{len(inner)} interior budget(s) with a convex minimum; "
                          "a power law in C needs at least 2")
    C = [o.flops for o in inner]
    a, k = powerlaw_fit(C, [o.params_opt for o in inner])
    b, kp = powerlaw_fit(C, [o.tokens_opt for o in inner])
    return a, b, k, kp


def fit_isoflop(points, *, axis: str = "params", window: int = DEFAULT_WINDOW,
                n_bootstrap: int = 0, seed: int = 0) -> IsoflopFit:
    """Approach 2 on the final row of each run; raises NotFittable with the reason."""
    if axis not in ("params", "tokens"):
        raise ValueError(f"axis={axis!r}: allowed 'params' or 'tokens'")
    if window < MIN_POINTS:
        raise ValueError(f"window={window}: must be at least {MIN_POINTS}")
    rows = final_rows(points)
    groups = _budget_groups(points, rows)
    optima = _optima(points, groups, axis, window)
    a, b, k, kp = _law(optima)
    ci95, samples = {}, None
    if n_bootstrap > 0:
        samples = _bootstrap(points, groups, axis, window, n_bootstrap, seed)
        if len(samples) >= 10:
            lo, hi = np.percentile(samples[:, :2], [2.5, 97.5], axis=0)
            ci95 = {"a": [float(lo[0]), float(hi[0])], "b": [float(lo[1]), float(hi[1])]}
    return IsoflopFit(a, b, k, kp, optima, axis, window, ci95, samples)


def _bootstrap(points, groups, axis, window, n_resamples, seed) -> np.ndarray:
    """Resample runs with replacement within each budget and refit; (a, b, k, k') rows, every
    resample at once (isoflop_bootstrap.py). The budget grid is the design and stays fixed; the
    runs inside it are the noise. A resample that repeats one run can leave a budget's window on
    two abscissae plus a duplicate, or no two interior budgets: its row is dropped."""
    N, D, L = (np.asarray(points.params, float), np.asarray(points.tokens, float),
               np.asarray(points.loss, float))
    return bootstrap_rows(N, D, L, groups, axis, window, n_resamples, seed)
