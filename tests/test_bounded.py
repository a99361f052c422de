"""laws/bounded.py is scipy's bounded Brent, row by row bit for bit: the bootstrap's numeric
optimum (Chinchilla under the table's FLOPs per token) gives the intervals it gave with one
scipy call per row."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from scaling_orchestrator.analysis.laws.bounded import minimize_bounded
from scaling_orchestrator.analysis.laws.forms.chinchilla import ParametricFit, numeric_optimum, optimal_6nd


def fpt(n):
    """A table's fitted FLOPs per token (recommend.flops_per_token_model's shape): scalar only."""
    return float(np.exp(1.9 + 1.01 * np.log(n)))


def scipy_n(E, A, B, alpha, beta, c):
    """The numeric optimum as one scipy call per row computes it, on the same arithmetic: numpy
    arrays of one element, since on a CPU with AVX-512 numpy's exp, log and power of an array
    differ from those of a scalar in the last bit, which moves Brent's steps on a flat valley
    (seen: 33 of 300 rows apart, by up to 7e-4 relative, with scalars here)."""
    E, A, B, alpha, beta = (np.array([v], dtype=float) for v in (E, A, B, alpha, beta))
    fpt_array = np.vectorize(fpt, otypes=[float])

    def loss(log_n):
        n = np.exp(np.array([log_n]))
        return float((E + A / n**alpha + B / (c / fpt_array(n)) ** beta)[0])

    with np.errstate(all="ignore"):
        guess, _ = optimal_6nd(A, B, alpha, beta, c)
        centre = np.log(guess)
    if np.isfinite(guess[0]) and guess[0] > 0:
        lo, hi = float((centre - 6.0)[0]), float((centre + 6.0)[0])
    else:
        lo, hi = 0.0, float(np.log(max(c / 6.0, 10.0)))
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(np.array([res.x]))[0])


def test_every_row_is_scipys_minimiser_bit_for_bit():
    rng = np.random.default_rng(0)
    rows = np.column_stack([1.69 * rng.uniform(0.9, 1.1, 300), 406.4 * rng.lognormal(0, 1, 300),
                            410.7 * rng.lognormal(0, 1, 300), rng.uniform(0.2, 0.5, 300),
                            rng.uniform(0.2, 0.5, 300)])
    rows[:5, 3] = 1e-9                       # degenerate rows: no 6ND optimum, search 1 .. C/6
    rows[5:8, 1] = np.inf                    # an overflowed resample
    for c in (3e18, 5.76e23):
        got = numeric_optimum(*rows.T, c, fpt)
        want = np.array([scipy_n(*r, c) for r in rows])
        np.testing.assert_array_equal(got, want)
        single = ParametricFit(*rows[20], objective=0.0, n_points=0, converged=True)
        assert single.compute_optimal(c, fpt)[0] == want[20]


def test_rows_stop_at_their_own_step_and_at_maxiter():
    centres = np.array([-3.0, 0.5, 2.0, 7.0])
    steps = []

    def f(x, rows):
        steps.append(len(rows))
        return (x - centres[rows]) ** 2 + np.where(rows == 3, 1e-3 * np.sin(40 * x), 0.0)

    got = minimize_bounded(f, np.full(4, -10.0), np.full(4, 10.0), xatol=1e-10)
    for k, c in enumerate(centres):
        want = minimize_scalar(lambda x, k=k: float(f(np.array([x]), np.array([k]))[0]),
                               bounds=(-10.0, 10.0), method="bounded", options={"xatol": 1e-10}).x
        assert got[k] == want
    assert steps[0] == 4 and min(steps) < 4          # rows leave the batch as they converge
    capped = minimize_bounded(f, np.full(4, -10.0), np.full(4, 10.0), xatol=1e-10, maxiter=3)
    want = minimize_scalar(lambda x: float(f(np.array([x]), np.array([0]))[0]), bounds=(-10.0, 10.0),
                           method="bounded", options={"xatol": 1e-10, "maxiter": 3}).x
    assert capped[0] == want
