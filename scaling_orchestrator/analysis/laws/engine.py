"""The fit every law form shares: Huber on log L, batched multi-start L-BFGS, screen, polish.

A form supplies log_loss(z, cols) -> (log L-hat (k, n), [d log L-hat / d z_j for each of its p
parameters], arrays that broadcast to (k, n)) in its own inner coordinates. `Objective` turns
that into SUM_i Huber_delta(log L-hat_i - log L_i), delta = 1e-3, and its gradient for k
parameter rows at once (Hoffmann et al. 2022 sec. 3.3; Besiroglu et al. 2024). A form may
supply its own exact objective with the same methods (`Form.objective`): Chinchilla's is
blocked for the CPU cache.

`fit_from_starts` runs one schedule for every form. The screen: SCREEN_ITERATIONS batched steps
from every start on the data, or above SCREEN_POINTS points on a fixed random subsample taken
as a data set of its own (its own frame); the best `form.keep_starts` go on to the full data
through the form's frame-free constants (`Form.to_free`). Then REFINE_ITERATIONS steps rank
them again and the best `form.refine_keep` run to convergence (MAX_ITERATIONS), and the best
POLISH_STARTS are polished by scipy's L-BFGS-B at tight tolerances. The other local minima the
starts reached (at most RUNNER_UPS) come back with the optimum, for the bootstrap.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from scaling_orchestrator.analysis.laws.cores import HALVES, can_fork, in_two
from scaling_orchestrator.analysis.laws.lbfgs import BatchResult, batched_lbfgs, two_core_fun

MAX_ITERATIONS = 1000
# After SCREEN_ITERATIONS batched steps only the best KEEP_STARTS starts go on (a form may keep
# fewer). Measured on Epoch's 240 points with Chinchilla's 4500 starts: run to convergence,
# 1003 of them reach the optimum (4.3 s on an idle 2-core machine); after 30 steps the best
# 300 hold 271 of them and the best 50 are all among them. Above SCREEN_POINTS points the screen
# runs on a subsample: it only ranks basins, and its cost grows as starts x points (a 2000-point
# fit took 27 s screening all points, 5.5 s screening 256, same busy 2-core machine).
SCREEN_ITERATIONS = 30
KEEP_STARTS = 300
SCREEN_POINTS = 256
# After the screen, REFINE_ITERATIONS steps on all points rank the kept starts again and only
# the best REFINE_KEEP go on to convergence: a 9-constant form (Farseer) has sloppy directions
# where many starts crawl for all 1000 iterations. Measured on 400 Farseer points (1% noise,
# busy 2-core machine): 300 starts to convergence 31 s, summed Huber 0.0026118; refined 14 s,
# 0.0026109.
REFINE_ITERATIONS = 100
REFINE_KEEP = 20
POLISH_STARTS = 5
POLISH_OPTIONS = {"gtol": 1e-10, "ftol": 1e-15, "maxiter": 20000, "maxcor": 20}
# Runner-up local minima kept for the bootstrap: at most RUNNER_UPS, each with an objective at
# most RUNNER_UP_RATIO times the optimum's and distinct from the minima kept before it
# (objectives more than 1e-4 apart, relative; one basin's starts agree to 1e-9). On Epoch's 240
# points Chinchilla's kept starts end in three basins, summed Huber 1.02e-3 (the fit), 2.31e-3
# (E -> 0) and 1.10e-2 (a term vanishing): the second is kept, the third is not.
RUNNER_UPS = 2
RUNNER_UP_RATIO = 3.0
# A batch of at least SPLIT_TERMS (start x point) terms is split between two processes (a fork
# of the `scaling fit` process costs about 5 ms; the screen's 4500 starts x 256 points are 1.2
# million terms, 30 steps of them about 1 s).
SPLIT_TERMS = 200_000


@dataclass(frozen=True)
class Frame:
    """Centre and scale of log N and log D: u = (log N - mn) / sn, v = (log D - md) / sd.

    Forms fit in these coordinates (log N ~ 20 next to an exponent ~ 0.3 makes the raw Hessian
    condition number ~1e5) and report in raw N and D; a bootstrap resample shares the full data
    set's frame."""

    mn: float
    sn: float
    md: float
    sd: float


class Columns:
    """One data set in a frame: N, D, L, U (unique tokens, when given) and their logs."""

    def __init__(self, N, D, L, U=None):
        self.N, self.D, self.L = check_points(N, D, L)
        self.U = None if U is None else check_unique_tokens(U, self.D)
        self.log_n, self.log_d, self.y = np.log(self.N), np.log(self.D), np.log(self.L)
        self.log_u = None if self.U is None else np.log(self.U)
        self.frame = Frame(
            self.log_n.mean(), max(self.log_n.std(), 1e-3), self.log_d.mean(), max(self.log_d.std(), 1e-3)
        )
        self.u = (self.log_n - self.frame.mn) / self.frame.sn
        self.v = (self.log_d - self.frame.md) / self.frame.sd

    def __len__(self) -> int:
        return len(self.y)

    def sample(self, rows) -> Columns:
        """These rows as a data set of their own (its own frame)."""
        return Columns(self.N[rows], self.D[rows], self.L[rows], None if self.U is None else self.U[rows])


def check_points(N, D, L) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, x in (("N", N), ("D", D), ("L", L)):
        x = np.asarray(x, dtype=float).ravel()
        bad = ~np.isfinite(x) | (x <= 0)
        if bad.any():
            raise ValueError(
                f"{name}: {bad.sum()} values are not finite and > 0 "
                f"(first: {x[bad][0]!r}); drop them before fitting"
            )
        arrays.append(x)
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise ValueError(f"N, D, L lengths differ: {[len(a) for a in arrays]}")
    if len(arrays[0]) < 5:
        raise ValueError(f"N: {len(arrays[0])} points; a 5-parameter law needs at least 5")
    return tuple(arrays)


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
        return two_core_fun(self.value_grad, weights, len(self.cols), pool(threads))


def pool(threads: int) -> ThreadPoolExecutor | None:
    """The two-thread pool every fit shares (a pool per fit would leave its idle threads behind:
    the reference-table bench makes ~30 fits); None for one thread."""
    return _pool() if threads > 1 else None


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(2)


@dataclass(frozen=True)
class Optimum:
    """The best inner parameters the starts reached, and the other minima they found."""

    z: np.ndarray  # (p,) inner coordinates of the full data set
    objective: float  # summed Huber loss there
    max_gradient: float  # max |gradient| there
    runner_ups: np.ndarray  # (r, p) inner rows of other basins, best first (r <= RUNNER_UPS)
    n_starts: int


def fit_from_starts(
    form, cols: Columns, starts, *, delta=1e-3, weights=None, threads=2, screen=True, frozen=()
) -> Optimum:
    """Fit the form to cols; starts(data) gives the inner start rows for a data set (cols, or
    the screen's subsample). screen=False runs every start to convergence."""
    rows = np.atleast_2d(np.asarray(starts(cols), dtype=float))
    w1 = None if weights is None else np.broadcast_to(np.asarray(weights, float), (len(cols),))
    z0 = rows
    if screen and len(rows) > form.keep_starts:
        z0 = _screen(form, cols, rows, starts, delta, w1, threads, frozen)
    full = form.objective(cols, delta, frozen)
    if screen and len(z0) > form.refine_keep:
        first = _run(full, z0, w1, threads, REFINE_ITERATIONS)
        z0 = first.x[_best(first.f, form.refine_keep)]
    result = _run(full, z0, w1, threads, MAX_ITERATIONS)
    best = _best(result.f, POLISH_STARTS)
    with np.errstate(all="ignore"):
        polished = [polish(full, result.x[i], w1) for i in best]
    z_best, f_best = min(polished, key=lambda p: p[1] if np.isfinite(p[1]) else np.inf)
    if not f_best <= result.f[best[0]]:
        z_best, f_best = result.x[best[0]], float(result.f[best[0]])
    _, g = full.value_grad(z_best[None, :], None if w1 is None else w1[None, :])
    others = _other_minima(result.x, result.f, f_best)
    return Optimum(np.asarray(z_best, float), float(f_best), float(np.max(np.abs(g))), others, len(rows))


def _screen(form, cols, rows, starts, delta, weights, threads, frozen) -> np.ndarray:
    """The form.keep_starts best starts after SCREEN_ITERATIONS batched steps, as inner rows
    of cols (rows: the starts on cols; starts(data): the starts on a subsample)."""
    sub, pick, z0 = cols, np.arange(len(cols)), rows
    if len(cols) > SCREEN_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(len(cols), SCREEN_POINTS, replace=False))
        sub = cols.sample(pick)
        z0 = np.atleast_2d(np.asarray(starts(sub), dtype=float))
    w = None if weights is None else weights[pick]
    first = _run(form.objective(sub, delta, frozen), z0, w, threads, SCREEN_ITERATIONS)
    kept = form.to_free(first.x[_best(first.f, form.keep_starts)], sub.frame)
    return form.from_free(kept, cols.frame)


def _run(objective, starts, weights, threads, max_iter):
    rows = None if weights is None else np.broadcast_to(weights, (len(starts), len(weights)))
    return run_batch(objective, starts, rows, threads, max_iter)


def run_batch(objective, starts, rows, threads: int, max_iter: int) -> BatchResult:
    """batched_lbfgs of the objective from each start (rows: each start's weight row, or
    None). With threads > 1 and at least SPLIT_TERMS (start x point) terms, the starts go in two
    halves to two processes where one may fork (laws/cores.py), else each objective call is
    split across the threads."""
    starts = np.asarray(starts, dtype=float)
    if threads > 1 and len(starts) * len(objective.cols) >= SPLIT_TERMS and can_fork():
        def half(part):
            weights = None if rows is None else rows[part]
            result = batched_lbfgs(objective.batch_fun(weights, 1), starts[part], max_iter=max_iter)
            return result.x, result.f, result.converged, np.asarray(result.iterations)

        halves = in_two(half)
        x, f, converged = np.empty_like(starts), np.empty(len(starts)), np.empty(len(starts), bool)
        for part, (x_half, f_half, converged_half, _) in zip(HALVES, halves):
            x[part], f[part], converged[part] = x_half, f_half, converged_half
        return BatchResult(x, f, converged, int(max(h[3] for h in halves)))
    return batched_lbfgs(objective.batch_fun(rows, threads), starts, max_iter=max_iter)


def _best(f, n: int) -> np.ndarray:
    return np.argsort(np.where(np.isfinite(f), f, np.inf))[:n]


def polish(objective, z0: np.ndarray, weights=None) -> tuple[np.ndarray, float]:
    """scipy L-BFGS-B from one start at tight tolerances (gtol 1e-10, ftol 1e-15)."""
    w = None if weights is None else weights[None, :]

    def fun(z):
        f, g = objective.value_grad(z[None, :], w)
        return f[0], g[0]

    res = minimize(fun, z0, jac=True, method="L-BFGS-B", options=POLISH_OPTIONS)
    return res.x, float(res.fun)


def _other_minima(z, f, f_best: float) -> np.ndarray:
    """The rows of z that end in other basins than the optimum f_best: at most RUNNER_UPS,
    best first, each within RUNNER_UP_RATIO of f_best and with an objective distinct from
    f_best's and from every row kept before it."""
    found: list[float] = [f_best]
    rows = []
    for i in np.argsort(np.where(np.isfinite(f), f, np.inf)):
        if len(rows) == RUNNER_UPS or not f[i] <= RUNNER_UP_RATIO * f_best:
            break
        if all(abs(f[i] - g) > 1e-4 * abs(g) for g in found):
            found.append(float(f[i]))
            rows.append(i)
    return np.asarray(z)[rows].reshape(-1, np.shape(z)[1])


def thin(starts: np.ndarray, n_starts: int | None) -> np.ndarray:
    """An even subset of n_starts rows of the grid (all of it when None or larger)."""
    if n_starts is None or n_starts >= len(starts):
        return starts
    if n_starts < 1:
        raise ValueError(f"n_starts={n_starts}; allowed: >= 1")
    return starts[np.linspace(0, len(starts) - 1, n_starts).round().astype(int)]
