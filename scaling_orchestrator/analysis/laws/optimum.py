"""Compute-optimal allocation by search: minimise L(N, C / flops_per_token(N)) over log N.

For forms without a closed form (Farseer; any form under an exact FLOP count) and for the
data-constrained law at a fixed unique-token budget. Vectorised over rows, each row its own
budget C and its own law constants (a bootstrap row), so 1000 resamples cost one pass:
a dense grid of GRID_POINTS in log N brackets the minimum, golden-section search narrows it.
The grid spans tokens per parameter D/N from MIN_TOKENS_PER_PARAM to MAX_TOKENS_PER_PARAM
(under 6ND at C = 5.76e23: N from 9.8e7 to 3.1e12; Chinchilla's optimum, D/N ~ 20, sits well
inside); a minimum on the grid's edge means the law has none inside it, and that row is NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

GRID_POINTS = 64
GOLDEN_ITERATIONS = 50          # 0.618^50 = 3.5e-11 of two grid steps (2 x 0.16 in log N)
MIN_TOKENS_PER_PARAM = 1e-2
MAX_TOKENS_PER_PARAM = 1e7
INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def per_token(flops_per_token: Callable | None, n) -> np.ndarray:
    """FLOPs per token at N (any shape): 6N when None; a scalar-only callable (the table's
    fitted model returns float()) is applied element by element."""
    n = np.asarray(n, dtype=float)
    if flops_per_token is None:
        return 6.0 * n
    try:
        out = np.asarray(flops_per_token(n), dtype=float)
        if out.shape == n.shape:
            return out
    except (TypeError, ValueError):
        pass
    return np.vectorize(flops_per_token, otypes=[float])(n)


def search_optimum(loss: Callable, C, flops_per_token: Callable | None = None):
    """(N*, D*) per row of C (shape (r,)); loss(N (r, m), D (r, m)) -> L (r, m).

    NaN where the minimum sits at the search range's edge or the law is not finite there."""
    C = np.asarray(C, dtype=float).reshape(-1)
    lo = 0.5 * np.log(C / (6.0 * MAX_TOKENS_PER_PARAM))
    hi = 0.5 * np.log(C / (6.0 * MIN_TOKENS_PER_PARAM))
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, GRID_POINTS)

    def at(log_n):
        n = np.exp(log_n)
        with np.errstate(all="ignore"):
            value = loss(n, C[:, None] / per_token(flops_per_token, n))
        return np.where(np.isfinite(value), value, np.inf)

    values = at(grid)
    best = np.argmin(values, axis=1)
    rows = np.arange(len(C))
    edge = (best == 0) | (best == GRID_POINTS - 1) | ~np.isfinite(values[rows, best])
    step = (hi - lo) / (GRID_POINTS - 1)
    a, b = grid[rows, best] - step, grid[rows, best] + step
    for _ in range(GOLDEN_ITERATIONS):
        x1, x2 = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
        f = at(np.column_stack([x1, x2]))
        left = f[:, 0] <= f[:, 1]              # the minimum lies in [a, x2]
        a, b = np.where(left, a, x1), np.where(left, x2, b)
    n_opt = np.exp(0.5 * (a + b))
    n_opt[edge] = np.nan
    return n_opt, C / per_token(flops_per_token, n_opt)
