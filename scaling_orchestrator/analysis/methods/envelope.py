"""Approach 1 of Hoffmann et al. 2022 (Chinchilla, Sec. 3.1): the training-curve envelope.

Each run's loss curve is interpolated in log-log (log loss against log FLOPs, linear between
evaluations) onto a grid of FLOP values. At each grid value the lowest loss across the runs
that reached it is the envelope; the run achieving it gives N and D (tokens interpolated the
same way) at that compute. N*(C) = k C^a and D*(C) = k' C^b are then OLS in log10-log10 over
the grid values whose winner is neither the smallest nor the largest model: there the frontier
is pinned by the grid's edge, not by the loss (Chinchilla fits 1500 log-spaced FLOP values; we
use `n_grid`, default 60, which is plenty for tens of runs).

Caveat (Chinchilla Sec. 3.1, footnote on cosine length): intermediate points of a cosine run
are not annealed, so they sit above what a run of that length would reach. Chinchilla matched
each cosine cycle to its run's length and reads only the envelope, as done here; tables whose
runs all share one schedule length still bias the envelope toward longer runs' final points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.powerlaw import powerlaw_fit

MIN_EVALS_PER_RUN = 3


@dataclass(frozen=True)
class EnvelopeFit:
    a: float
    b: float
    k_params: float
    k_tokens: float
    grid_flops: np.ndarray     # the FLOP grid
    loss: np.ndarray           # envelope loss at each grid value
    params: np.ndarray         # N of the winning run
    tokens: np.ndarray         # D of the winning run at that compute
    run: np.ndarray            # winning run id
    used: np.ndarray           # bool: interior winner, entered the power law
    n_runs: int
    fittable: ClassVar[bool] = True

    @property
    def ci95(self) -> dict:
        """No intervals: the envelope is not bootstrapped (one winner per grid value)."""
        return {}

    def params_opt(self, flops) -> np.ndarray:
        return self.k_params * np.asarray(flops, dtype=float) ** self.a

    def tokens_opt(self, flops) -> np.ndarray:
        return self.k_tokens * np.asarray(flops, dtype=float) ** self.b

    def to_dict(self) -> dict:
        return {"fittable": True, "a": self.a, "b": self.b, "k_params": self.k_params,
                "k_tokens": self.k_tokens, "n_runs": self.n_runs,
                "n_grid_used": int(self.used.sum()),
                "envelope": [{"flops": float(c), "loss": float(l), "params": float(n),
                              "tokens": float(d), "run": str(r), "used": bool(u)}
                             for c, l, n, d, r, u in zip(self.grid_flops, self.loss, self.params,
                                                         self.tokens, self.run, self.used)]}

    @classmethod
    def from_dict(cls, d: dict) -> EnvelopeFit:
        rows = d["envelope"]
        column = [np.array([r[k] for r in rows], float) for k in ("flops", "loss", "params", "tokens")]
        return cls(float(d["a"]), float(d["b"]), float(d["k_params"]), float(d["k_tokens"]), *column,
                   np.array([r["run"] for r in rows], str), np.array([r["used"] for r in rows], bool),
                   int(d["n_runs"]))


def _curves(points) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """run -> (log flops, log loss, log tokens, params), sorted by flops, positive rows only."""
    run = np.asarray(points.run).astype(str)
    C, L, D, N = (np.asarray(v, float) for v in (points.flops, points.loss, points.tokens,
                                                   points.params))
    ok = (C > 0) & (L > 0) & (D > 0) & np.isfinite(C + L + D)
    out = {}
    for r in np.unique(run[ok]):
        g = np.flatnonzero(ok & (run == r))
        g = g[np.argsort(C[g])]
        _, first = np.unique(C[g], return_index=True)  # one value per FLOP count
        g = g[first]
        if len(g) >= 2:
            out[r] = (np.log(C[g]), np.log(L[g]), np.log(D[g]), float(N[g[0]]))
    return out


def has_curves(points) -> bool:
    """True when at least two runs were evaluated three or more times."""
    _, counts = np.unique(np.asarray(points.run).astype(str), return_counts=True)
    return int((counts >= MIN_EVALS_PER_RUN).sum()) >= 2


def fit_envelope(points, *, n_grid: int = 60) -> EnvelopeFit:
    """Approach 1; raises NotFittable("no training curves") on one row per run."""
    if not has_curves(points):
        raise NotFittable("no training curves (fewer than two runs with "
                          f"{MIN_EVALS_PER_RUN}+ evaluations)")
    curves = _curves(points)
    lo = min(c[0][0] for c in curves.values())
    hi = max(c[0][-1] for c in curves.values())
    grid = np.linspace(lo, hi, n_grid)
    best = np.full(n_grid, np.inf)
    win_n, win_d, win_r = np.full(n_grid, np.nan), np.full(n_grid, np.nan), np.empty(n_grid, object)
    for r, (lc, ll, ld, n) in curves.items():
        inside = (grid >= lc[0]) & (grid <= lc[-1])
        loss = np.exp(np.interp(grid[inside], lc, ll))
        better = np.flatnonzero(inside)[loss < best[inside]]
        best[better] = loss[loss < best[inside]]
        win_n[better], win_r[better] = n, r
        win_d[better] = np.exp(np.interp(grid[better], lc, ld))
    sizes = np.array([c[3] for c in curves.values()])
    used = np.isfinite(best) & (win_n > sizes.min()) & (win_n < sizes.max())
    if used.sum() < 3 or len(np.unique(win_n[used])) < 2:
        raise NotFittable(f"{int(used.sum())} envelope point(s) won by an interior model size; "
                          "the frontier needs 3 over at least 2 sizes")
    C = np.exp(grid)
    a, k = powerlaw_fit(C[used], win_n[used])
    b, kp = powerlaw_fit(C[used], win_d[used])
    return EnvelopeFit(a, b, k, kp, C, best, win_n, win_d, win_r.astype(str), used, len(curves))
