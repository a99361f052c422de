"""The IsoFLOP bootstrap with every resample fitted at once.

A resample draws each budget's runs with replacement (the budget grid is the design and stays
fixed) and refits Approach 2: per budget the window parabola of parabola.py, then N*(C) and
D*(C) as power laws over the interior budgets. Fitting 1,000 resamples one budget at a time is
10,000 small least-squares solves in Python; here a resample is a row of counts over its budget's
runs, so one budget's 1,000 parabolas are one batched solve.

The same fit as isoflop.fit_budget and isoflop._law (the same draws, centre, window widening,
convexity, vertex and edge rules); only the arithmetic differs (normal equations centred on the window's
centre instead of a scaled Vandermonde SVD), so values agree to about 1e-12 relative
(tests/test_isoflop_bootstrap.py compares the two on random budgets).
"""

from __future__ import annotations

import numpy as np

from scaling_orchestrator.analysis.methods.parabola import MIN_VALUES


def resample_counts(groups, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Per budget group, an (n_resamples, len(group)) matrix of how often each run is drawn:
    the draws of rng.choice(len(g), len(g)) resample by resample, budget by budget, made in one
    call with a bound per draw (the same stream: tests/test_isoflop_bootstrap.py; 1000
    resamples of 10 budgets 0.18 s one call at a time, 0.003 s so)."""
    sizes = np.array([len(g) for _, g in groups], dtype=np.int64)
    total = int(sizes.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, np.tile(np.repeat(sizes, sizes), n_resamples)) if total else np.zeros(0, np.int64)
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)  # each draw's budget's first column
    flat = np.repeat(np.arange(n_resamples) * total, total) + np.tile(first, n_resamples) + draws
    counts = np.bincount(flat, minlength=n_resamples * total).reshape(n_resamples, total)
    return np.split(counts, np.cumsum(sizes)[:-1], axis=1)


def _weighted_fit(t, y, w, degree: int) -> np.ndarray:
    """Weighted least-squares polynomial coefficients (lowest power first) for each row of w
    (k, m); t and y are the m abscissae and ordinates."""
    powers = t[None, :] ** np.arange(2 * degree + 1)[:, None]  # (2d+1, m)
    moments = w @ powers.T  # (k, 2d+1): sum w t^j
    lhs = np.stack([moments[:, i:i + degree + 1] for i in range(degree + 1)], axis=1)
    rhs = w @ (powers[:degree + 1] * y[None, :]).T  # (k, d+1)
    return _solve(lhs, rhs)


def bootstrap_rows(N, D, L, groups, axis: str, window: int, n_resamples: int, seed: int) -> np.ndarray:
    """(a, b, k, k') of every resample whose law is finite (isoflop._bootstrap's rows)."""
    usable, log_main, log_other = [], [], []
    for (_, g), counts in zip(groups, resample_counts(groups, n_resamples, seed)):
        main, other = (N[g], D[g]) if axis == "params" else (D[g], N[g])
        order = np.argsort(main, kind="stable")
        if len(g) < MIN_VALUES:
            ok = np.zeros(n_resamples, bool)
            edge, x_main, x_other = ok, np.full(n_resamples, np.nan), np.full(n_resamples, np.nan)
        else:
            ok, edge, x_main, x_other = budget_vertices(
                np.log10(main[order]), np.log10(other[order]), L[g][order], counts[:, order], window)
        usable.append(ok & ~edge)
        log_main.append(x_main)
        log_other.append(x_other)
    usable, log_main, log_other = (np.stack(v, axis=1) for v in (usable, log_main, log_other))
    log_n, log_d = (log_main, log_other) if axis == "params" else (log_other, log_main)
    flops = [b for b, _ in groups]
    a, k = power_laws(flops, usable, log_n)
    b, kp = power_laws(flops, usable, log_d)
    rows = np.column_stack([a, b, k, kp])
    return rows[np.all(np.isfinite(rows), axis=1)]


def budget_vertices(lx, lo, loss, counts, window: int):
    """Vertices of one budget for every resample: (fittable, edge, x_main*, x_other*) in log10.
    lx, lo, loss: the budget's runs ascending in lx (log10 of the parabola's axis and of the
    other count); counts (k, m): each resample's draws of those runs."""
    k, m = counts.shape
    ux, ui = np.unique(lx, return_inverse=True)
    present = counts > 0
    present_u = (counts @ (ui[:, None] == np.arange(len(ux))[None, :])) > 0  # (k, u)
    n_distinct = present_u.sum(1)
    best = np.argmin(np.where(present, loss[None, :], np.inf), axis=1)
    centre = lx[best]
    lowest = np.where(present_u, ux[None, :], np.inf).min(1)
    highest = np.where(present_u, ux[None, :], -np.inf).max(1)
    edge = (centre == lowest) | (centre == highest)
    order = np.argsort(np.where(present_u, np.abs(ux[None, :] - centre[:, None]), np.inf), axis=1,
                       kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(len(ux))[None, :].repeat(k, 0), axis=1)
    size = np.maximum(MIN_VALUES, np.minimum(window, n_distinct))
    coef = np.full((k, 3), np.nan)
    todo = n_distinct >= MIN_VALUES
    while todo.any():
        rows = np.flatnonzero(todo)
        inside = (rank[rows][:, ui] < size[rows, None]) & present[rows]
        coef[rows] = _weighted_fit_centred(lx, loss, counts[rows] * inside, centre[rows])
        near = (rank[rows] < size[rows, None]) & present_u[rows]      # the window's values
        vertex = centre[rows] - coef[rows, 1] / (2.0 * coef[rows, 2])
        within = ((vertex >= np.where(near, ux[None, :], np.inf).min(1))
                  & (vertex <= np.where(near, ux[None, :], -np.inf).max(1)))
        widen = todo.copy()
        widen[rows] = ~((coef[rows, 2] > 0) & within) & (size[rows] < n_distinct[rows])
        size[widen] = np.minimum(n_distinct[widen], size[widen] + 2)
        todo = widen
    convex = coef[:, 2] > 0
    x_star = centre - coef[:, 1] / (2.0 * coef[:, 2])
    edge = edge | ~((x_star >= lowest) & (x_star <= highest))   # past every size drawn
    inside = (rank[:, ui] < size[:, None]) & present
    line = _weighted_fit(lx, lo, (counts * inside).astype(float), 1)  # (intercept, slope)
    other = line[:, 0] + line[:, 1] * x_star  # log other vs log main, locally linear
    return (n_distinct >= MIN_VALUES) & convex, edge, x_star, other


def _weighted_fit_centred(lx, y, w, centre) -> np.ndarray:
    """Quadratic coefficients (c0, c1, c2) of y in t = lx - centre, one row per resample."""
    t = lx[None, :] - centre[:, None]  # (k, m)
    powers = t[:, None, :] ** np.arange(5)[None, :, None]  # (k, 5, m)
    moments = np.einsum("km,kjm->kj", w, powers)
    lhs = np.stack([moments[:, i:i + 3] for i in range(3)], axis=1)
    rhs = np.einsum("km,kjm->kj", w * y[None, :], powers[:, :3])
    return _solve(lhs, rhs)


def _solve(lhs, rhs) -> np.ndarray:
    """Each row's solution of lhs x = rhs; NaN for a singular system (a resample whose window
    holds too few distinct sizes), which np.linalg.solve would raise on for the whole batch."""
    with np.errstate(all="ignore"):
        singular = ~(np.abs(np.linalg.det(lhs)) > 0)
        eye = np.broadcast_to(np.eye(lhs.shape[-1]), lhs.shape)
        x = np.linalg.solve(np.where(singular[:, None, None], eye, lhs), rhs[..., None])[..., 0]
    x[singular] = np.nan
    return x


def power_laws(flops, usable, log_opt) -> tuple[np.ndarray, np.ndarray]:
    """(exponent, coefficient) of log_opt against log10 C over each resample's usable budgets
    (k, b masks), by OLS in log10-log10; NaN where fewer than 2 budgets are usable."""
    lc = np.log10(np.asarray(flops, float))[None, :]
    n = usable.sum(1)
    with np.errstate(all="ignore"):
        mc = np.where(usable, lc, 0).sum(1) / n
        my = np.where(usable, log_opt, 0).sum(1) / n
        dc = np.where(usable, lc - mc[:, None], 0)
        slope = (dc * np.where(usable, log_opt - my[:, None], 0)).sum(1) / (dc * dc).sum(1)
        coef = 10.0 ** (my - slope * mc)
    bad = n < 2
    slope[bad], coef[bad] = np.nan, np.nan
    return slope, coef
