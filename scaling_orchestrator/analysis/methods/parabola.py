"""The windowed convex parabola: the valley fit IsoFLOP profiles and hyperparameter bowls share.

Loss is a valley in log x (x = parameters at a fixed budget, or the learning rate at a fixed
size). A parabola fitted through every point is biased by the valley's walls far from the
minimum (Porian et al. 2024, Sec. 3 and App. C: up to +0.35 on the IsoFLOP exponent), so it
is fitted only through the points whose x is among the `window` distinct values nearest the
lowest observed loss (default 5, at least 3). If that parabola is not convex (seed or
digitisation noise), or its vertex lies outside the window (a nearly flat parabola whose vertex
the noise places anywhere: 15 sizes 1.35x apart at 1% noise put one at 3e-3 parameters), the
window widens two values at a time until it is convex with its vertex inside, or until it holds
every value. E.g. 9 sizes with the best at the 3rd: the window is sizes 1-5 (the 5 nearest in
log x); if those bend the wrong way it becomes sizes 1-7, then 1-9.

The window counts DISTINCT x values, so a bootstrap resample that repeats a run (two points at
one x) cannot shrink it below three abscissae.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MIN_VALUES = 3      # a parabola needs three distinct abscissae


@dataclass(frozen=True)
class WindowParabola:
    """y = c2 x^2 + c1 x + c0 through `rows` (indices into the x given), x in log10 units."""

    c2: float
    c1: float
    c0: float
    rows: np.ndarray       # indices of the points inside the window
    window: int            # distinct x values inside the window
    x_lo: float            # the window's span in x
    x_hi: float

    @property
    def convex(self) -> bool:
        return bool(self.c2 > 0)

    @property
    def x_opt(self) -> float:
        return -self.c1 / (2.0 * self.c2)

    @property
    def y_opt(self) -> float:
        x = self.x_opt
        return self.c0 + self.c1 * x + self.c2 * x ** 2

    @property
    def curvature(self) -> float:
        """d2 y / dx2: in loss per (decade of x)^2."""
        return 2.0 * self.c2

    @property
    def coefficients(self) -> tuple:
        """(c2, c1, c0, x_lo, x_hi): enough to redraw the window's curve in a plot."""
        return (self.c2, self.c1, self.c0, self.x_lo, self.x_hi)


def window_parabola(x, y, window: int, distinct=None) -> WindowParabola:
    """Fit the window parabola through (x, y); x is log10 of the abscissa, duplicates allowed.

    The centre is the first point of lowest y in the order given (callers pass x ascending).
    The caller checks that x has at least MIN_VALUES distinct values and reads `convex`;
    distinct: np.unique(x) when the caller has it already."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ux = np.unique(x) if distinct is None else distinct
    centre = x[int(np.argmin(y))]
    k = max(MIN_VALUES, min(window, len(ux)))
    while True:
        near = ux[np.argsort(np.abs(ux - centre), kind="stable")[:k]]
        rows = np.flatnonzero((x[:, None] == near).any(axis=1))   # np.isin(x, near), for a few values
        c2, c1, c0 = polyfit(x[rows], y[rows], 2)
        if (c2 > 0 and near.min() <= -c1 / (2.0 * c2) <= near.max()) or k >= len(ux):
            break
        k = min(len(ux), k + 2)
    return WindowParabola(c2, c1, c0, rows, int(k), x[rows].min(), x[rows].max())


def polyfit(x, y, deg: int) -> np.ndarray:
    """np.polyfit(x, y, deg) for 1-D float x and y, without its argument checks: the same
    least-squares solve (np.linalg.lstsq) of the same column-scaled Vandermonde matrix, so the
    same coefficients bit for bit. An IsoFLOP bootstrap fits some 20,000 of these; np.polyfit's
    checks and np.vander took 40% of that time."""
    order = deg + 1
    x, y = np.asarray(x, float) + 0.0, np.asarray(y, float) + 0.0   # as np.polyfit: -0.0 -> 0.0
    lhs = np.empty((len(x), order))
    lhs[:, -1] = 1.0
    if order > 1:
        lhs[:, -2] = x
        for j in range(order - 3, -1, -1):   # x^k as np.vander forms it: x^(k-1) * x
            lhs[:, j] = lhs[:, j + 1] * x
    scale = np.sqrt((lhs * lhs).sum(axis=0))
    lhs /= scale
    c, _, rank, _ = np.linalg.lstsq(lhs, y, len(x) * np.finfo(float).eps)
    if rank != order:
        warnings.warn("Polyfit may be poorly conditioned", np.exceptions.RankWarning, stacklevel=2)
    return c / scale
