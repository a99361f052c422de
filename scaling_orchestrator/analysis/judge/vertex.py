"""How well a held-out budget measures its own N*: the parabola vertex's 95% interval.

The back-test judges each method's N* forecast against the held-out budget's own vertex
(backtest.py), but that vertex is itself a fit through a few noisy runs: on
examples/simulated.yaml's first design (1% run noise, 5 sizes) it scattered from 0.75x to 2.4x the law's
N* over 20 seeds, so a forecast that was exactly right "missed" by 25% in most of them. The
vertex x* = -c1 / (2 c2) of the window parabola (parabola.py) gets an interval by the delta
method from the coefficients' least-squares covariance, the residual variance on the window's
n - 3 degrees of freedom and Student's t quantile; an N* forecast then holds when it is within
the threshold of some value inside that interval (forecast.py).
"""

from __future__ import annotations

import numpy as np
from scipy.special import stdtrit

from scaling_orchestrator.analysis.methods.parabola import MIN_VALUES, window_parabola

LEVEL = 0.95
MIN_DOF = 2  # one degree of freedom (4 runs) puts Student's t at 12.7: an interval that holds anything


def vertex_interval(params, loss, window: int) -> tuple[float, float] | None:
    """[lo, hi] of the N* the runs (params, loss) of one budget measure, at 95%; None when the
    window leaves fewer than MIN_DOF degrees of freedom (the forecast is then judged against the
    vertex itself) or is not convex. E.g. sizes 1e8..1e9 with losses
    exactly on a parabola give a zero-width interval at its vertex."""
    x = np.log10(np.asarray(params, float))
    order = np.argsort(x)
    x, y = x[order], np.asarray(loss, float)[order]
    if len(np.unique(x)) < MIN_VALUES:
        return None
    fit = window_parabola(x, y, window)
    xs, ys = x[fit.rows], y[fit.rows]
    dof = len(xs) - 3
    if not fit.convex or dof < MIN_DOF:
        return None
    design = np.column_stack([xs ** 2, xs, np.ones_like(xs)])
    residual = ys - design @ np.array([fit.c2, fit.c1, fit.c0])
    cov = float(residual @ residual) / dof * np.linalg.pinv(design.T @ design)
    grad = np.array([fit.c1 / (2 * fit.c2 ** 2), -1 / (2 * fit.c2), 0.0])
    # Student's t quantile as scipy.stats.t.ppf computes it, without importing scipy.stats
    half = float(stdtrit(dof, 0.5 + LEVEL / 2)) * float(np.sqrt(max(grad @ cov @ grad, 0.0)))
    return 10.0 ** (fit.x_opt - half), 10.0 ** (fit.x_opt + half)
