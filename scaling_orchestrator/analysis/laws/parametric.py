"""Approach 3 of Hoffmann et al. 2022: fit L(N, D) = E + A / N^alpha + B / D^beta.

The fit follows Chinchilla section 3.3 and its Besiroglu et al. 2024 replication: minimise the
SUM over points of Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L), delta = 1e-3,
with A = exp(a), B = exp(b), E = exp(e), by L-BFGS from the 4500-start grid alpha, beta in
{0, .5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}. A mean instead of a sum makes
L-BFGS stop at its start point (the gradient is 240x smaller, under scipy's default tolerances).

All starts run together: `batched_lbfgs` (scaling_orchestrator.analysis.laws.lbfgs) keeps one L-BFGS state per
start
and evaluates the objective and its analytic gradient for every start in one numpy pass, so the
4500 starts cost a few hundred array operations instead of 4500 scipy calls. The best few are
polished with scipy's L-BFGS-B at tight tolerances. On Epoch's 240 points this reproduces
E = 1.8172, alpha = 0.3473, beta = 0.3672, summed Huber 1.01827e-3 (reference_fits.json).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from scaling_orchestrator.analysis.laws.lbfgs import batched_lbfgs, two_core_fun

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
# Chinchilla's start grid (as in Besiroglu et al. 2024): 6 x 6 x 5 x 5 x 5 = 4500 starts,
# columns (a, b, e, alpha, beta).
CHINCHILLA_GRID = np.array(
    list(
        itertools.product(
            np.arange(0.0, 26.0, 5.0),
            np.arange(0.0, 26.0, 5.0),
            np.arange(-1.0, 1.01, 0.5),
            np.arange(0.0, 2.01, 0.5),
            np.arange(0.0, 2.01, 0.5),
        )
    )
)
# After SCREEN_ITERATIONS batched steps only the best KEEP_STARTS starts go on to convergence.
# Measured on Epoch's 240 points: run to convergence, 1003 of the 4500 starts reach the optimum
# (4.3 s on an idle 2-core machine); after 30 steps the best 300 hold 271 of them and the best
# 50 are all among them.
# screen=False in fit_parametric runs every start to convergence instead.
SCREEN_ITERATIONS = 30
KEEP_STARTS = 300
SCREEN_POINTS = 256
POLISH_STARTS = 5
# Runner-up local minima kept on the fit for the bootstrap: at most RUNNER_UPS, each with an
# objective at most RUNNER_UP_RATIO times the optimum's and distinct from the minima kept
# before it (objectives more than 1e-4 apart, relative; one basin's starts agree to 1e-9).
# On Epoch's 240 points the kept starts end in three basins, summed Huber 1.02e-3 (the fit),
# 2.31e-3 (E -> 0) and 1.10e-2 (a term vanishing): the second is kept, the third is not.
RUNNER_UPS = 2
RUNNER_UP_RATIO = 3.0
POLISH_OPTIONS = {"gtol": 1e-10, "ftol": 1e-15, "maxiter": 20000, "maxcor": 20}
# value_grad's block: 65,536 terms = 512 KB an array, a dozen of which fit a 2 MB L2 cache.
BLOCK_TERMS = 65_536


class LogLaw:
    """The objective on one data set, in centred coordinates that L-BFGS handles well.

    With u = (log N - mN) / sN, the term a - alpha log N equals a' - alpha' u where
    a' = a - alpha mN and alpha' = alpha sN: the same minimum, but a and alpha no longer move
    together (log N ~ 20 makes the raw Hessian condition number ~1e5)."""

    def __init__(self, N, D, L, delta: float = 1e-3):
        self.log_n, self.log_d, self.y = np.log(N), np.log(D), np.log(L)
        self.mn, self.sn = self.log_n.mean(), max(self.log_n.std(), 1e-3)
        self.md, self.sd = self.log_d.mean(), max(self.log_d.std(), 1e-3)
        self.u = (self.log_n - self.mn) / self.sn
        self.v = (self.log_d - self.md) / self.sd
        self.basis_n = np.column_stack([np.ones_like(self.u), self.u])
        self.basis_d = np.column_stack([np.ones_like(self.v), self.v])
        self.delta = delta

    def to_inner(self, x):
        """(a, b, e, alpha, beta) rows -> centred coordinates."""
        a, b, e, al, be = np.atleast_2d(x).T
        return np.column_stack([a - al * self.mn, b - be * self.md, e, al * self.sn, be * self.sd])

    def to_outer(self, z):
        a1, b1, e, al1, be1 = np.atleast_2d(z).T
        al, be = al1 / self.sn, be1 / self.sd
        return np.column_stack([a1 + al * self.mn, b1 + be * self.md, e, al, be])

    def _terms(self, z):
        """Residuals r = LSE(t1, t2, e) - log L with the exponentials, unshifted: every
        (a, b, e, alpha, beta) of interest keeps the terms within exp's range (|t| < 700),
        and a wild trial step that overflows gives f = inf, which the line search rejects."""
        z = np.atleast_2d(z)
        e1 = np.exp(z[:, 0:1] - z[:, 3:4] * self.u)
        e2 = np.exp(z[:, 1:2] - z[:, 4:5] * self.v)
        e3 = np.exp(z[:, 2:3])  # E = exp(e): one per row
        total = e1 + e2 + e3
        return np.log(total) - self.y, e1, e2, e3, total

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def huber_terms(self, z) -> np.ndarray:
        """Per-point Huber loss (k, n) for each row of z."""
        r = self._terms(z)[0]
        c = np.clip(r, -self.delta, self.delta)
        return c * (r - 0.5 * c)  # = r^2/2 inside +-delta, delta (|r| - delta/2) outside

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def value_grad(self, z, weights=None):
        """Summed (weighted) Huber loss and its gradient for each row of z (k, 5).

        Rows go through in blocks of about BLOCK_TERMS (row x point) terms, each block's
        temporaries reused in place: a block's arrays stay in the CPU cache where a whole batch
        (4500 starts x 256 points, 9 MB an array) streams through memory some 20 times.
        Every value is computed as unblocked, bit for bit. Measured, CPU seconds per call
        (median of 9, one thread, busy 2-core machine): 4500 starts x 256 points 0.128
        unblocked, 0.045 blocked; 1000 weighted rows x 1000 points 0.114 and 0.042."""
        z = np.atleast_2d(z)
        f, grad = np.empty(len(z)), np.empty((len(z), 5))
        step = max(1, BLOCK_TERMS // len(self.y))
        for s in range(0, len(z), step):
            rows = slice(s, s + step)
            self._block(z[rows], None if weights is None else weights[rows], f[rows], grad[rows])
        bad = ~np.isfinite(f) | ~np.isfinite(grad).all(1)
        f[bad] = np.inf
        return f, grad

    def _block(self, z, weights, f, grad) -> None:
        """value_grad for one block of rows, written into f and grad (views of the result)."""
        e1 = np.multiply(z[:, 3:4], self.u)
        np.exp(np.subtract(z[:, 0:1], e1, out=e1), out=e1)  # A / N^alpha
        e2 = np.multiply(z[:, 4:5], self.v)
        np.exp(np.subtract(z[:, 1:2], e2, out=e2), out=e2)  # B / D^beta
        e3 = np.exp(z[:, 2])  # E: one per row
        total = np.add(e1, e2)
        total += e3[:, None]
        r = np.log(total)
        r -= self.y
        q = np.clip(r, -self.delta, self.delta)  # Huber'(r)
        huber = np.multiply(q, 0.5)
        huber = np.subtract(r, huber, out=huber)
        huber *= q  # = r^2/2 inside +-delta, delta (|r| - delta/2) outside
        q /= total
        if weights is not None:
            huber *= weights
            q *= weights
        f[:] = huber.sum(1)
        e1 *= q
        e2 *= q
        g1 = e1 @ self.basis_n  # (sum, sum * u) in one BLAS call
        g2 = e2 @ self.basis_d
        grad[:, 0], grad[:, 1], grad[:, 2] = g1[:, 0], g2[:, 0], q.sum(1) * e3
        grad[:, 3], grad[:, 4] = -g1[:, 1], -g2[:, 1]

    def batch_fun(self, weights=None, threads: int = 2):
        """fun(z, rows) for batched_lbfgs; rows index the weight matrix (one row per problem)."""
        return two_core_fun(
            self.value_grad, weights, len(self.y), ThreadPoolExecutor(threads) if threads > 1 else None
        )


@dataclass(frozen=True)
class ParametricFit:
    """A fitted L(N, D) = E + A / N^alpha + B / D^beta (N parameters, D tokens, L nats/token)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float  # summed Huber loss on log L at the optimum
    n_points: int
    converged: bool
    delta: float = 1e-3
    n_starts: int = 0
    # Other local minima the fit's starts converged to, best first, rows (a, b, e, alpha,
    # beta): the bootstrap refits each resample from these too (scaling_orchestrator.analysis.laws.bootstrap).
    runner_ups: tuple = field(default=(), compare=False, repr=False)

    def predict(self, N, D, U=None) -> np.ndarray:
        """Loss at N params, D tokens; U (unique tokens) is accepted for the law-form
        interface and ignored: this form counts every token as new."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    def compute_optimal(self, C, flops_per_token: Callable | None = None):
        """(N*, D*, L*) minimising L at training compute C FLOPs.

        Under C = 6 N D this is Chinchilla eq. 4: G = (alpha A / (beta B))^(1/(alpha+beta)),
        N* = G (C/6)^(beta/(alpha+beta)), D* = (C/6)^(alpha/(alpha+beta)) / G. With Epoch's fit
        at C = 5.76e23 (Chinchilla's budget): N* = 7.3e10, D* = 1.3e12, L* = 1.974. With
        flops_per_token(N) (e.g. the exact Appendix F count) D = C / flops_per_token(N),
        minimised over log N."""
        C = np.asarray(C, dtype=float)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError(f"compute_optimal: C={C} must be finite and > 0 FLOPs")
        if flops_per_token is None:
            n_opt, d_opt = optimal_6nd(self.A, self.B, self.alpha, self.beta, C)
        else:
            n_opt = np.vectorize(lambda c: self._numeric_n(c, flops_per_token))(C)
            d_opt = C / np.vectorize(flops_per_token, otypes=[float])(n_opt)
        loss = self.predict(n_opt, d_opt)
        if C.ndim == 0:
            return float(n_opt), float(d_opt), float(loss)
        return n_opt, d_opt, loss

    def _numeric_n(self, c: float, flops_per_token: Callable) -> float:
        def loss(log_n):
            n = np.exp(log_n)
            return float(self.predict(n, c / flops_per_token(n)))

        with np.errstate(all="ignore"):
            guess, _ = optimal_6nd(self.A, self.B, self.alpha, self.beta, c)
        if np.isfinite(guess) and guess > 0:
            lo, hi = np.log(guess) - 6.0, np.log(guess) + 6.0  # a factor 400 either side
        else:  # a degenerate law (alpha or beta ~ 0, a bootstrap resample): search 1 .. C/6
            lo, hi = 0.0, float(np.log(max(c / 6.0, 10.0)))
        res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
        return float(np.exp(res.x))

    def params(self) -> dict:
        return {
            "E": self.E,
            "A": self.A,
            "B": self.B,
            "alpha": self.alpha,
            "beta": self.beta,
            "objective": self.objective,
            "n_points": self.n_points,
            "converged": self.converged,
            "delta": self.delta,
            "n_starts": self.n_starts,
        }

    def summary(self) -> str:
        a_exp = self.beta / (self.alpha + self.beta)
        return (
            f"L(N, D) = {self.E:.4f} + {self.A:.4g} / N^{self.alpha:.4f} + "
            f"{self.B:.4g} / D^{self.beta:.4f}\n"
            f"N* ~ C^{a_exp:.3f}, D* ~ C^{1 - a_exp:.3f}  (C = 6ND)\n"
            f"summed Huber(delta={self.delta:g}) = {self.objective:.6g} over {self.n_points} "
            f"points, {self.n_starts} starts, converged={self.converged}"
        )


def optimal_6nd(A, B, alpha, beta, C):
    """Chinchilla eq. 4 (vectorised over parameter arrays and C)."""
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = G * (C / 6.0) ** (beta / (alpha + beta))
    return n_opt, C / (6.0 * n_opt)


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


def polish(law: LogLaw, z0: np.ndarray, weights=None) -> tuple[np.ndarray, float]:
    """scipy L-BFGS-B from one start at tight tolerances (gtol 1e-10, ftol 1e-15)."""
    w = None if weights is None else weights[None, :]

    def fun(z):
        f, g = law.value_grad(z[None, :], w)
        return f[0], g[0]

    res = minimize(fun, z0, jac=True, method="L-BFGS-B", options=POLISH_OPTIONS)
    return res.x, float(res.fun)


def _screen(N, D, L, weights, starts, delta, threads, screen) -> np.ndarray:
    """The KEEP_STARTS best starts (outer coordinates) after SCREEN_ITERATIONS batched steps.

    Above SCREEN_POINTS points the screen runs on a fixed random subsample: it only ranks
    basins, and its cost grows as starts x points (a 2000-point fit took 27 s screening all
    points, 5.5 s screening 256, same busy 2-core machine)."""
    pick = np.arange(len(N))
    if screen and len(N) > SCREEN_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(len(N), SCREEN_POINTS, replace=False))
    law = LogLaw(N[pick], D[pick], L[pick], delta)
    w = None if weights is None else np.broadcast_to(weights[pick], (len(starts), len(pick)))
    first = batched_lbfgs(
        law.batch_fun(w, threads), law.to_inner(starts), max_iter=SCREEN_ITERATIONS if screen else 1000
    )
    keep = np.argsort(np.where(np.isfinite(first.f), first.f, np.inf))[:KEEP_STARTS]
    return law.to_outer(first.x[keep])


def fit_parametric(
    N, D, L, *, delta: float = 1e-3, grid="chinchilla", weights=None, threads: int = 2, screen: bool = True
) -> ParametricFit:
    """Fit E + A/N^alpha + B/D^beta to points (N params, D tokens, L nats/token).

    grid: "chinchilla" (the 4500 starts) or an array of starts, rows (a, b, e, alpha, beta).
    weights: optional per-point multiplicities (the bootstrap's resampled runs)."""
    N, D, L = check_points(N, D, L)
    starts = (
        CHINCHILLA_GRID
        if isinstance(grid, str) and grid == "chinchilla"
        else np.atleast_2d(np.asarray(grid, dtype=float))
    )
    if starts.ndim != 2 or starts.shape[1] != 5:
        raise ValueError(f"grid: shape {starts.shape}; allowed 'chinchilla' or (k, 5) starts")
    w1 = None if weights is None else np.broadcast_to(np.asarray(weights, float), N.shape)
    kept = _screen(N, D, L, w1, starts, delta, threads, screen)
    law = LogLaw(N, D, L, delta)
    rows = None if w1 is None else np.broadcast_to(w1, (len(kept), len(N)))
    full = batched_lbfgs(law.batch_fun(rows, threads), law.to_inner(kept), max_iter=1000)
    best = np.argsort(full.f)[:POLISH_STARTS]
    polished = [polish(law, full.x[i], w1) for i in best]
    z_best, f_best = min(polished, key=lambda p: p[1])
    if f_best > full.f[best[0]]:
        z_best, f_best = full.x[best[0]], float(full.f[best[0]])
    a, b, e, alpha, beta = law.to_outer(z_best)[0]
    _, g = law.value_grad(z_best[None, :], None if w1 is None else w1[None, :])
    converged = bool(np.max(np.abs(g)) <= 1e-8 and np.isfinite(f_best))
    others = law.to_outer(_other_minima(full.x, full.f, f_best))
    return ParametricFit(
        E=float(np.exp(e)),
        A=float(np.exp(a)),
        B=float(np.exp(b)),
        alpha=float(alpha),
        beta=float(beta),
        objective=float(f_best),
        n_points=len(N),
        converged=converged,
        delta=delta,
        n_starts=len(starts),
        runner_ups=tuple(tuple(map(float, row)) for row in others),
    )


def _other_minima(z, f, f_best: float) -> np.ndarray:
    """The rows of z (inner coordinates) that end in other basins than the optimum f_best:
    at most RUNNER_UPS, best first, each within RUNNER_UP_RATIO of f_best and with an
    objective distinct from f_best's and from every row kept before it."""
    found: list[float] = [f_best]
    rows = []
    for i in np.argsort(np.where(np.isfinite(f), f, np.inf)):
        if len(rows) == RUNNER_UPS or not f[i] <= RUNNER_UP_RATIO * f_best:
            break
        if all(abs(f[i] - g) > 1e-4 * abs(g) for g in found):
            found.append(float(f[i]))
            rows.append(i)
    return np.asarray(z)[rows].reshape(-1, 5)
