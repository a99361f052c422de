"""The fit every law form shares: Huber on log L, batched multi-start L-BFGS, screen, polish.

A form supplies log_loss(z, cols) -> (log L-hat (k, n), [d log L-hat / d z_j for each of its p
parameters], arrays that broadcast to (k, n)) in its own inner coordinates. `Objective` turns
that into SUM_i Huber_delta(log L-hat_i - log L_i), delta = 1e-3, and its gradient for k
parameter rows at once: the objective scaling_orchestrator.analysis.laws.parametric minimises for Chinchilla's
form
(Hoffmann et al. 2022 sec. 3.3; Besiroglu et al. 2024), here for any form. `fit_from_starts`
follows fit_parametric's schedule: SCREEN_ITERATIONS batched steps from every start on at most
SCREEN_POINTS points, the best KEEP_STARTS (a form may keep fewer) go on, the best
POLISH_STARTS are polished by scipy's L-BFGS-B at tight tolerances; in between, one more cut
(REFINE_ITERATIONS steps on all points, the best REFINE_KEEP run to convergence).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from scaling_orchestrator.analysis.laws.lbfgs import batched_lbfgs, two_core_fun
from scaling_orchestrator.analysis.laws.parametric import (
    KEEP_STARTS,
    POLISH_STARTS,
    SCREEN_ITERATIONS,
    SCREEN_POINTS,
    check_points,
    polish,
)

MAX_ITERATIONS = 1000
# After the screen, REFINE_ITERATIONS steps on all points rank the kept starts again and only
# the best REFINE_KEEP go on to convergence: a 9-constant form (Farseer) has sloppy directions
# where many starts crawl for all 1000 iterations. Measured on 400 Farseer points (1% noise,
# busy 2-core machine): 300 starts to convergence 31 s, summed Huber 0.0026118; refined 14 s,
# 0.0026109.
REFINE_ITERATIONS = 100
REFINE_KEEP = 20


@dataclass(frozen=True)
class Frame:
    """Centre and scale of log N and log D: u = (log N - mn) / sn, v = (log D - md) / sd.

    Forms fit in these coordinates (log N ~ 20 next to an exponent ~ 0.3 makes the raw Hessian
    condition number ~1e5) and report in raw N and D; the frame is fixed by the full data set,
    so a subsample or a bootstrap resample shares the same inner coordinates."""

    mn: float
    sn: float
    md: float
    sd: float


class Columns:
    """One data set in a frame: log N, log D, log U (unique tokens, when given), log L."""

    def __init__(self, N, D, L, U=None, frame: Frame | None = None):
        N, D, L = check_points(N, D, L)
        self.log_n, self.log_d, self.y = np.log(N), np.log(D), np.log(L)
        self.log_u = None if U is None else np.log(check_unique_tokens(U, D))
        self.frame = frame or Frame(
            self.log_n.mean(), max(self.log_n.std(), 1e-3), self.log_d.mean(), max(self.log_d.std(), 1e-3)
        )
        self.u = (self.log_n - self.frame.mn) / self.frame.sn
        self.v = (self.log_d - self.frame.md) / self.frame.sd

    def __len__(self) -> int:
        return len(self.y)

    def select(self, rows) -> Columns:
        u = None if self.log_u is None else np.exp(self.log_u[rows])
        return Columns(
            np.exp(self.log_n[rows]), np.exp(self.log_d[rows]), np.exp(self.y[rows]), u, self.frame
        )


def check_unique_tokens(U, D) -> np.ndarray:
    """U as floats, clipped to D: a run cannot see more unique tokens than it trains on, but a
    table that rounds both (U = 1.5e9 printed for D = 1.4999e9) should not be refused."""
    U = np.asarray(U, dtype=float).ravel()
    if U.shape != D.shape:
        raise ValueError(f"unique_tokens: {len(U)} values for {len(D)} points")
    bad = ~np.isfinite(U) | (U <= 0)
    if bad.any():
        raise ValueError(f"unique_tokens: {bad.sum()} values are not finite and > 0 (first: {U[bad][0]!r})")
    over = U > D * 1.001
    if over.any():
        raise ValueError(
            f"unique_tokens: {over.sum()} values exceed the tokens trained on "
            f"(first: U = {U[over][0]:.4g} > D = {D[over][0]:.4g})"
        )
    return np.minimum(U, D)


class Objective:
    """Summed (weighted) Huber loss of log L-hat - log L for rows of inner parameters z."""

    def __init__(self, form, cols: Columns, delta: float = 1e-3, frozen=()):
        self.form, self.cols, self.delta = form, cols, delta
        self.frozen = np.asarray(frozen, dtype=int)

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def huber_terms(self, z) -> np.ndarray:
        """Per-point Huber loss (k, n) for each row of z."""
        pred, _ = self.form.log_loss(np.atleast_2d(z), self.cols, jac=False)
        r = pred - self.cols.y
        c = np.clip(r, -self.delta, self.delta)
        return c * (r - 0.5 * c)

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def value_grad(self, z, weights=None):
        """Summed Huber loss (k,) and its gradient (k, p); f = inf where anything overflowed
        (the line search then rejects the step)."""
        z = np.atleast_2d(z)
        pred, jac = self.form.log_loss(z, self.cols)
        r = pred - self.cols.y
        q = np.clip(r, -self.delta, self.delta)  # Huber'(r)
        huber = q * (r - 0.5 * q)
        if weights is not None:
            huber, q = huber * weights, q * weights
        f = huber.sum(1)
        grad = np.column_stack([np.broadcast_to(q * j, r.shape).sum(1) for j in jac])
        if self.frozen.size:
            grad[:, self.frozen] = 0.0
        bad = ~np.isfinite(f) | ~np.isfinite(grad).all(1)
        f[bad] = np.inf
        return f, grad

    def batch_fun(self, weights=None, threads: int = 2):
        """fun(z, rows) for batched_lbfgs; rows index the weight matrix (one row per problem)."""
        return two_core_fun(self.value_grad, weights, len(self.cols), _pool() if threads > 1 else None)


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """One two-thread pool for every fit (a pool per fit would leave its idle threads behind:
    the reference-table bench makes ~30 fits)."""
    return ThreadPoolExecutor(2)


def fit_from_starts(
    form,
    cols: Columns,
    starts,
    *,
    delta=1e-3,
    weights=None,
    threads=2,
    screen=True,
    frozen=(),
    keep_starts: int = KEEP_STARTS,
):
    """Best inner parameters from the starts: (z (p,), summed Huber, max |gradient|).
    screen=False runs every start to convergence."""
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    w1 = None if weights is None else np.broadcast_to(np.asarray(weights, float), (len(cols),))
    if screen and len(starts) > keep_starts:
        starts = _screen(form, cols, starts, delta, w1, threads, frozen, keep_starts)
    full = Objective(form, cols, delta, frozen)
    if screen and len(starts) > REFINE_KEEP:
        first = _run(full, starts, w1, threads, REFINE_ITERATIONS)
        starts = first.x[_best(first.f, REFINE_KEEP)]
    result = _run(full, starts, w1, threads, MAX_ITERATIONS)
    best = _best(result.f, POLISH_STARTS)
    with np.errstate(all="ignore"):
        polished = [polish(full, result.x[i], w1) for i in best]
    z_best, f_best = min(polished, key=lambda p: p[1] if np.isfinite(p[1]) else np.inf)
    if not f_best <= result.f[best[0]]:
        z_best, f_best = result.x[best[0]], float(result.f[best[0]])
    _, g = full.value_grad(z_best[None, :], None if w1 is None else w1[None, :])
    return np.asarray(z_best, float), float(f_best), float(np.max(np.abs(g)))


def _run(objective: Objective, starts, weights, threads, max_iter):
    rows = None if weights is None else np.broadcast_to(weights, (len(starts), len(weights)))
    return batched_lbfgs(objective.batch_fun(rows, threads), starts, max_iter=max_iter)


def _best(f, n: int) -> np.ndarray:
    return np.argsort(np.where(np.isfinite(f), f, np.inf))[:n]


def _screen(form, cols, starts, delta, weights, threads, frozen, keep_starts) -> np.ndarray:
    """The keep_starts best starts after SCREEN_ITERATIONS batched steps on a fixed subsample
    of at most SCREEN_POINTS points (it only ranks basins; its cost grows as starts x points)."""
    pick = np.arange(len(cols))
    if len(cols) > SCREEN_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(len(cols), SCREEN_POINTS, replace=False))
    sub = Objective(form, cols.select(pick), delta, frozen)
    first = _run(sub, starts, None if weights is None else weights[pick], threads, SCREEN_ITERATIONS)
    return first.x[_best(first.f, keep_starts)]


def refit_weighted(objective: Objective, weights, z_full, grid, *, n_grid_starts: int, threads: int = 2):
    """Refit every resample (a weight row) from the full-data optimum and the n_grid_starts
    grid starts best on that resample; returns (z (R, p), f (R,), converged (R,))."""
    n_res, p = len(weights), len(z_full)
    terms = objective.huber_terms(grid)
    score = weights @ np.where(np.isfinite(terms), terms, 1e300).T  # (R, k) in one matmul
    n_best = min(n_grid_starts, len(grid))
    best = np.argpartition(score, n_best - 1, axis=1)[:, :n_best] if n_best else np.zeros((n_res, 0), int)
    starts = np.concatenate([np.broadcast_to(z_full, (n_res, 1, p)), grid[best]], axis=1)
    per = starts.shape[1]
    result = batched_lbfgs(
        objective.batch_fun(np.repeat(weights, per, axis=0), threads),
        starts.reshape(-1, p),
        max_iter=MAX_ITERATIONS,
    )
    f = np.where(np.isfinite(result.f), result.f, np.inf).reshape(n_res, per)
    pick = np.argmin(f, axis=1)
    chosen = np.arange(n_res) * per + pick
    return result.x[chosen], f[np.arange(n_res), pick], result.converged[chosen]
