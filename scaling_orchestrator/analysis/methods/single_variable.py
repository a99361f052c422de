"""Kaplan et al. 2020 (arXiv:2001.08361) single-variable laws and the loss frontier.

- L(N) = (N_c / N)^alpha_N (their Eq. 1.1; paper: alpha_N = 0.076, N_c = 8.8e13 non-embedding
  params). Kaplan fit it to models trained to convergence on a large corpus; from an IsoFLOP
  grid the closest stand-in is, for each model size, the run with the MOST tokens (the
  least data-limited). Sizes are binned to 0.02 dex so repeated seeds count once.
- L(D) = (D_c / D)^alpha_D (Eq. 1.2; alpha_D = 0.095, D_c = 5.4e13 tokens): likewise, for
  each token count the run with the MOST parameters (the least capacity-limited).
- L*(C) = E + A C^-alpha: the compute frontier (the irreducible-loss form of Kaplan Sec. 6 and
  of Porian et al. 2024's saturating fit), fitted to the lowest observed loss of each budget by
  least squares on log L with scipy (relative error, so small and large budgets weigh alike).

All three read the final row of each run. They describe the data; the recommendation of
(N*, D*) comes from the IsoFLOP, envelope and parametric methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.optimize import least_squares

from scaling_orchestrator.analysis.data.points import final_rows
from scaling_orchestrator.analysis.errors import NotFittable, Unfit, read_section
from scaling_orchestrator.analysis.methods.powerlaw import powerlaw_fit
from scaling_orchestrator.analysis.numerics import number

BIN_DEX = 0.02


@dataclass(frozen=True)
class SingleLaw:
    """L(x) = (x_c / x)^exponent, fitted by OLS in log-log on n_points."""

    exponent: float
    x_c: float
    n_points: int
    name: str = "x"            # the variable: "N" (parameters) or "D" (tokens)
    fittable: ClassVar[bool] = True

    def predict(self, x) -> np.ndarray:
        return (self.x_c / np.asarray(x, dtype=float)) ** self.exponent

    def to_dict(self) -> dict:
        return {"fittable": True, "alpha": self.exponent, f"{self.name}_c": self.x_c,
                "n_points": self.n_points}

    @classmethod
    def from_dict(cls, d: dict, name: str) -> SingleLaw:
        return cls(number(d["alpha"]), number(d[f"{name}_c"]), int(d["n_points"]), name)


@dataclass(frozen=True)
class Frontier:
    """L*(C) = E + A C^-alpha over n_points budget minima."""

    E: float
    A: float
    alpha: float
    n_points: int
    rms_log_residual: float
    fittable: ClassVar[bool] = True

    def predict(self, flops) -> np.ndarray:
        return self.E + self.A * np.asarray(flops, dtype=float) ** -self.alpha

    def to_dict(self) -> dict:
        return {"fittable": True, "E": self.E, "A": self.A, "alpha": self.alpha,
                "n_points": self.n_points, "rms_log_residual": self.rms_log_residual}

    @classmethod
    def from_dict(cls, d: dict) -> Frontier:
        return cls(*(number(d[k]) for k in ("E", "A", "alpha")), int(d["n_points"]),
                   number(d["rms_log_residual"]))


@dataclass(frozen=True)
class KaplanFit:
    """Every Kaplan piece, each fitted or Unfit; attempted is False when there were no scaling
    rows at all (then the JSON section holds only the three pieces' reasons)."""

    L_of_N: SingleLaw | Unfit
    L_of_D: SingleLaw | Unfit
    frontier: Frontier | Unfit
    attempted: bool = True

    def to_dict(self) -> dict:
        head = {"fittable": True} if self.attempted else {}
        return {**head, "L_of_N": self.L_of_N.to_dict(), "L_of_D": self.L_of_D.to_dict(),
                "frontier": self.frontier.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> KaplanFit:
        return cls(read_section(d.get("L_of_N"), lambda p: SingleLaw.from_dict(p, "N")),
                   read_section(d.get("L_of_D"), lambda p: SingleLaw.from_dict(p, "D")),
                   read_section(d.get("frontier"), Frontier.from_dict), attempted="fittable" in d)


def _best_per_bin(x, other, loss) -> tuple[np.ndarray, np.ndarray]:
    """Per 0.02-dex bin of x, the loss of the row with the largest `other`."""
    bins = np.round(np.log10(x) / BIN_DEX).astype(np.int64)
    xs, ls = [], []
    for b in np.unique(bins):
        g = np.flatnonzero(bins == b)
        j = g[np.argmax(other[g])]
        xs.append(x[j])
        ls.append(loss[j])
    return np.asarray(xs), np.asarray(ls)


def fit_single(x, other, loss, name: str) -> SingleLaw:
    xs, ls = _best_per_bin(np.asarray(x, float), np.asarray(other, float), np.asarray(loss, float))
    if len(xs) < 3:
        raise NotFittable(f"{len(xs)} distinct {name} value(s); L({name}) needs at least 3")
    slope, coef = powerlaw_fit(xs, ls)
    if slope >= 0:
        raise NotFittable(f"loss does not fall with {name} (log-log slope {slope:.3f})")
    # log L = alpha log x_c - alpha log x  =>  alpha = -slope, x_c = coef^(1/alpha)
    exponent = -slope
    log10_xc = np.log10(coef) / exponent
    if not np.isfinite(log10_xc) or abs(log10_xc) > 300:
        raise NotFittable(f"L({name}) is too flat to place {name}_c (log-log slope {slope:.2g})")
    return SingleLaw(exponent, float(10.0 ** log10_xc), len(xs), name)


def budget_minima(points) -> tuple[np.ndarray, np.ndarray]:
    """(budget flops, lowest final loss) per budget."""
    rows = final_rows(points)
    budget, loss = np.asarray(points.budget, float)[rows], np.asarray(points.loss, float)[rows]
    flops = np.unique(budget)
    return flops, np.array([loss[budget == b].min() for b in flops])


def fit_frontier(flops, loss) -> Frontier:
    C, L = np.asarray(flops, float), np.asarray(loss, float)
    if len(C) < 4:
        raise NotFittable(f"{len(C)} budget(s); E + A C^-alpha has 3 constants and needs 4 "
                          "budgets")
    c0 = float(np.exp(np.mean(np.log(C))))  # scale C so A is O(1) and the problem conditioned
    x = C / c0

    def resid(theta):
        e, log_a, alpha = theta
        return np.log(np.exp(e) + np.exp(log_a) * x ** -alpha) - np.log(L)

    best = None
    for frac in (0.0, 0.5, 0.9):
        for alpha0 in (0.05, 0.2, 0.5):
            e0 = np.log(max(frac * L.min(), 1e-3 * L.min()))
            a0 = np.log(max(L.mean() - np.exp(e0), 1e-6))
            r = least_squares(resid, [e0, a0, alpha0], bounds=([-30, -50, 0], [np.log(L.min()), 50, 5]))
            if best is None or r.cost < best.cost:
                best = r
    e, log_a, alpha = best.x
    # A in the original units: A' x^-alpha = A' (C/c0)^-alpha = (A' c0^alpha) C^-alpha
    rms = float(np.sqrt(np.mean(best.fun ** 2)))
    return Frontier(float(np.exp(e)), float(np.exp(log_a) * c0 ** alpha), float(alpha), len(C), rms)


def fit_kaplan(points) -> KaplanFit:
    """Every Kaplan piece, each either fitted or Unfit with the reason."""
    rows = final_rows(points)
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    pieces = []
    for fit in (lambda: fit_single(N, D, L, "N"), lambda: fit_single(D, N, L, "D"),
                lambda: fit_frontier(*budget_minima(points))):
        try:
            pieces.append(fit())
        except NotFittable as exc:
            pieces.append(Unfit.from_error(exc))
    return KaplanFit(*pieces)
