"""L-BFGS for k independent problems at once, in numpy: one memory and one line search each.

Chinchilla's fit starts from 4500 points (scaling_orchestrator.analysis.laws.forms.chinchilla);
one scipy call per start costs 4500 Python-level optimisations. Here every iteration evaluates
the objective for all still-active problems in one call, fun(x (j, p), rows (j,)) ->
(f (j,), grad (j, p)), where rows says which of the k problems the j points belong to (a
problem-specific weight row, for the bootstrap). A problem leaves the batch when it stops, as
scipy's L-BFGS-B stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARMIJO_C1 = 1e-4  # sufficient decrease f(x + t d) <= f(x) + c1 t d.g, scipy's and Nocedal-Wright's c1


@dataclass(frozen=True)
class BatchResult:
    x: np.ndarray  # (k, p) final points
    f: np.ndarray  # (k,) objective values
    converged: np.ndarray  # (k,) bool: gradient, f-change or line-search stop before max_iter
    iterations: int


@np.errstate(over="ignore", invalid="ignore", divide="ignore")  # trial steps may overflow
def batched_lbfgs(
    fun, x0, *, max_iter=300, gtol=1e-10, ftol=1e-15, memory=10, max_backtracks=50
) -> BatchResult:
    """Minimise k independent problems together: one L-BFGS memory and one Armijo
    backtracking line search per problem; fun(x (j, p), rows (j,)) -> (f (j,), grad (j, p)).

    Stops a problem as scipy's L-BFGS-B does: max |grad| <= gtol, or
    (f_old - f_new) / max(|f_old|, |f_new|, 1) <= ftol, or no decrease in float64."""
    x = np.array(x0, dtype=float)
    k, p = x.shape
    f, g = fun(x, np.arange(k))
    S, Y, rho = np.zeros((memory, k, p)), np.zeros((memory, k, p)), np.zeros((memory, k))
    gamma = np.zeros(k)  # 0: no curvature pair yet, take a unit-length first step
    active = np.isfinite(f) & (np.abs(g).max(1) > gtol)
    done = ~active & np.isfinite(f)
    it = 0
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        d, slope, t = _search_direction(g[idx], S, Y, rho, gamma, idx, (it - 1) % memory)
        x_new, f_new, g_new, stuck = _line_search(
            fun, idx, x[idx], f[idx], g[idx], d, slope, t, max_backtracks
        )
        _remember(S, Y, rho, gamma, idx, it % memory, x_new - x[idx], g_new - g[idx])
        f_old = f[idx]
        x[idx], f[idx], g[idx] = x_new, f_new, g_new
        scale = np.maximum(np.maximum(np.abs(f_old), np.abs(f_new)), 1.0)
        stop = (np.abs(g_new).max(1) <= gtol) | stuck | ((f_old - f_new) <= ftol * scale)
        active[idx[stop]], done[idx[stop]] = False, True
    return BatchResult(x=x, f=f, converged=done, iterations=it)


def _direction(g, S, Y, rho, gamma, newest):
    """L-BFGS two-loop recursion for every problem at once (S, Y: (m, k, p))."""
    m = S.shape[0]
    order = [(newest - j) % m for j in range(m)]
    q, coef = g.copy(), {}
    for i in order:
        coef[i] = rho[i] * np.einsum("kp,kp->k", S[i], q)
        q -= coef[i][:, None] * Y[i]
    r = q * np.where(gamma > 0, gamma, 1.0)[:, None]
    for i in reversed(order):
        b = rho[i] * np.einsum("kp,kp->k", Y[i], r)
        r += S[i] * (coef[i] - b)[:, None]
    return -r


def _search_direction(gi, S, Y, rho, gamma, idx, newest):
    """Direction d, slope d.g and first trial step t for the active problems idx (gi = g[idx]).

    Where the L-BFGS direction is not a descent (d.g >= 0 or not finite) that problem forgets
    its memory (rho, gamma are reset in place) and takes steepest descent. Without curvature
    (gamma 0) the first trial step has unit length: t = 1 / |d|."""
    d = _direction(gi, S[:, idx], Y[:, idx], rho[:, idx], gamma[idx], newest)
    slope = np.einsum("kp,kp->k", d, gi)
    reset = ~np.isfinite(slope) | (slope >= 0)
    if reset.any():
        d[reset], gamma[idx[reset]], rho[:, idx[reset]] = -gi[reset], 0.0, 0.0
        slope[reset] = -np.einsum("kp,kp->k", gi[reset], gi[reset])
    t = np.where(gamma[idx] > 0, 1.0, 1.0 / np.linalg.norm(d, axis=1))
    return d, slope, t


def _line_search(fun, idx, x0, f0, g0, d, slope, t, max_backtracks):
    """Armijo backtracking for the problems idx from (x0, f0, g0) along d: halve t (in place)
    until f(x0 + t d) is finite and <= f0 + ARMIJO_C1 t slope; up to max_backtracks tries.

    Returns the accepted (x, f, grad) and `stuck`, the problems that found no such step and
    keep their start: 50 halvings shrink the first trial step by 2^-50 = 8.9e-16, below
    float64's resolution of x, so no decrease is left to find."""
    x_new, f_new, g_new = x0.copy(), f0.copy(), g0.copy()
    pend = np.arange(len(idx))
    for _ in range(max_backtracks):
        xt = x0[pend] + t[pend, None] * d[pend]
        ft, gt = fun(xt, idx[pend])
        ok = np.isfinite(ft) & (ft <= f0[pend] + ARMIJO_C1 * t[pend] * slope[pend])
        x_new[pend[ok]], f_new[pend[ok]], g_new[pend[ok]] = xt[ok], ft[ok], gt[ok]
        pend = pend[~ok]
        if not pend.size:
            break
        t[pend] *= 0.5
    stuck = np.zeros(len(idx), dtype=bool)
    stuck[pend] = True
    return x_new, f_new, g_new, stuck


def _remember(S, Y, rho, gamma, idx, slot, s, y):
    """Store the step s and gradient change y of the problems idx in memory slot `slot`.

    A pair counts only with curvature s.y > eps |y|^2 (eps = 2.2e-16, float64's); otherwise
    rho = 0 makes the two-loop recursion skip it and gamma, the initial Hessian scale
    s.y / y.y, stays as it was."""
    sy, yy = np.einsum("kp,kp->k", s, y), np.einsum("kp,kp->k", y, y)
    good = (sy > 2.2e-16 * yy) & (yy > 0)
    S[slot, idx], Y[slot, idx] = s, y
    rho[slot, idx] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
    gamma[idx] = np.where(good, sy / np.where(good, yy, 1.0), gamma[idx])


def two_core_fun(value_grad, weights, n_points: int, pool):
    """fun(z, rows) for batched_lbfgs over value_grad(z, w) -> (f, grad); rows index the weight
    matrix (one row per problem). numpy releases the GIL in elementwise kernels, so with a pool
    the two halves of a batch of at least 200,000 (start x point) terms run on two cores."""

    def fun(z, rows):
        w = None if weights is None else weights[rows]
        if pool is None or len(z) * n_points < 200_000:
            return value_grad(z, w)
        cut = len(z) // 2
        parts = [(z[:cut], None if w is None else w[:cut]), (z[cut:], None if w is None else w[cut:])]
        (f1, g1), (f2, g2) = pool.map(lambda zw: value_grad(*zw), parts)
        return np.concatenate([f1, f2]), np.vstack([g1, g2])

    return fun
