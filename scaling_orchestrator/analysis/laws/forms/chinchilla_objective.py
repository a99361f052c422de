"""Chinchilla's summed Huber objective, written out for its LSE, blocked for the CPU cache, and
with the law's terms computed once per distinct (N, D).

The same loss and gradient as scaling_orchestrator.analysis.laws.engine.Objective computes from
Chinchilla.log_loss, in a fraction of the time: the 4500-start screen and the bootstrap's
1000 resamples spend nearly all their time here.
"""

from __future__ import annotations

import numpy as np

from scaling_orchestrator.analysis.laws.engine import pool
from scaling_orchestrator.analysis.laws.lbfgs import two_core_fun

# value_grad's block: 65,536 terms = 512 KB an array, a dozen of which fit a 2 MB L2 cache.
BLOCK_TERMS = 65_536
# The law's terms go through the distinct (N, D) pairs when there are at most this share of
# the points (seeds of one configuration): 10 seeds of 100 configurations make 100 pairs.
# Measured, CPU ms per call (median of 7, one thread, busy 2-core machine): 4500 starts x 256
# points (96 pairs) 37.8 -> 23.8; 1000 weighted rows x 1000 points (100 pairs) 32.6 -> 17.1.
DISTINCT_SHARE = 0.5


class ChinchillaObjective:
    """Summed (weighted) Huber loss of LSE(a' - alpha' u, b' - beta' v, e) - log L for rows of
    Chinchilla's inner coordinates (a', b', e, alpha', beta'), u and v the centred log N, log D."""

    def __init__(self, cols, delta: float = 1e-3, frozen=()):
        self.cols, self.delta = cols, delta
        self.u, self.v, self.y = cols.u, cols.v, cols.y
        self.basis_n = np.column_stack([np.ones_like(self.u), self.u])
        self.basis_d = np.column_stack([np.ones_like(self.v), self.v])
        self.frozen = np.asarray(frozen, dtype=int)
        self.pairs_u, self.pairs_v, self.at = distinct_pairs(self.u, self.v)

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
        if self.frozen.size:
            grad[:, self.frozen] = 0.0
        bad = ~np.isfinite(f) | ~np.isfinite(grad).all(1)
        f[bad] = np.inf
        return f, grad

    def _block(self, z, weights, f, grad) -> None:
        """value_grad for one block of rows, written into f and grad (views of the result)."""
        e1, e2, e3, total, r = self._law(z)
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

    def _law(self, z):
        """(A / N^alpha, B / D^beta, E (k,), their sum, log of the sum), each (k, n) but E,
        for the rows z. With repeated (N, D) pairs the exponentials and the log run over the
        distinct pairs and are gathered to the points: the same floats, bit for bit."""
        u, v = (self.u, self.v) if self.at is None else (self.pairs_u, self.pairs_v)
        e1 = np.multiply(z[:, 3:4], u)
        np.exp(np.subtract(z[:, 0:1], e1, out=e1), out=e1)  # A / N^alpha
        e2 = np.multiply(z[:, 4:5], v)
        np.exp(np.subtract(z[:, 1:2], e2, out=e2), out=e2)  # B / D^beta
        e3 = np.exp(z[:, 2])  # E: one per row
        total = np.add(e1, e2)
        total += e3[:, None]
        log_total = np.log(total)
        if self.at is not None:
            e1, e2, total, log_total = (np.take(x, self.at, axis=1) for x in (e1, e2, total, log_total))
        return e1, e2, e3, total, log_total

    def batch_fun(self, weights=None, threads: int = 2):
        """fun(z, rows) for batched_lbfgs; rows index the weight matrix (one row per problem)."""
        return two_core_fun(self.value_grad, weights, len(self.y), pool(threads))


def distinct_pairs(u, v):
    """(distinct u, distinct v, the pair of each point) when the points hold at most
    DISTINCT_SHARE as many distinct (u, v) pairs as points, else (u, v, None)."""
    pairs, at = np.unique(np.column_stack([u, v]), axis=0, return_inverse=True)
    if len(pairs) > DISTINCT_SHARE * len(u):
        return u, v, None
    return pairs[:, 0].copy(), pairs[:, 1].copy(), at.ravel()
