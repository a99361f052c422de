"""The windowed convex parabola shared by IsoFLOP profiles and hyperparameter bowls."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_orchestrator.analysis.methods.parabola import polyfit, window_parabola


def test_window_holds_the_values_nearest_the_minimum():
    # y = (x - 0.3)^2 on 9 values: the window of 5 around the best (x = 0.25) is x = 0 .. 1,
    # and its vertex is the true one.
    x = np.linspace(-1.0, 3.0, 9)
    fit = window_parabola(x, (x - 0.3) ** 2, 5)
    assert fit.window == 5 and fit.convex
    assert (fit.x_lo, fit.x_hi) == (-0.5, 1.5)
    assert fit.x_opt == pytest.approx(0.3) and fit.y_opt == pytest.approx(0.0, abs=1e-12)
    assert fit.curvature == pytest.approx(2.0)


def test_window_widens_until_convex():
    # The best value sits at the grid's first x and the loss flattens before it climbs: the 3
    # and 5 values nearest it bend the wrong way (c2 = -0.20, -0.068), all 7 do not (+0.22).
    x = np.arange(7.0)
    y = np.array([1.0, 1.5, 1.6, 1.65, 1.7, 3.0, 6.0])
    fit = window_parabola(x, y, 3)
    assert fit.convex and fit.window == 7 and len(fit.rows) == 7
    assert fit.c2 == pytest.approx(0.2202, abs=1e-4)


def test_window_widens_while_its_vertex_lies_outside_it():
    # A noisy valley: the 5 values around the best (x = 4) fit a nearly flat parabola whose
    # vertex is at x = 8.9, past the window's x = 2 .. 6; the 7 nearest put it at 4.0.
    x = np.arange(9.0)
    y = np.array([1.075, 1.036, 1.016, 1.004, 0.999, 1.029, 1.0, 1.038, 1.076])
    assert -np.polyfit(x[2:7], y[2:7], 2)[1] / (2 * np.polyfit(x[2:7], y[2:7], 2)[0]) == pytest.approx(8.9)
    fit = window_parabola(x, y, 5)
    assert fit.window == 7 and fit.x_lo <= fit.x_opt <= fit.x_hi
    assert fit.x_opt == pytest.approx(4.0055, abs=1e-4)


def test_repeated_x_values_count_once():
    # A bootstrap resample repeats runs: two points at one x still make one of the 3 values.
    x = np.array([0.0, 1.0, 1.0, 2.0, 3.0])
    y = (x - 1.2) ** 2
    fit = window_parabola(x, y, 3)
    assert fit.window == 3 and sorted(fit.rows.tolist()) == [0, 1, 2, 3]


def test_concave_everywhere_says_so():
    x = np.arange(5.0)
    fit = window_parabola(x, -(x - 2.0) ** 2, 3)
    assert not fit.convex and fit.window == 5


def test_polyfit_is_numpys_bit_for_bit():
    """The IsoFLOP bootstrap's lean polyfit: np.polyfit's coefficients exactly, its rank warning too."""
    rng = np.random.default_rng(3)
    for n in (3, 5, 9, 40):
        x = np.sort(rng.uniform(5, 9, n))
        y = 3.0 + 0.2 * (x - 7) ** 2 + 0.01 * rng.standard_normal(n)
        for deg in (1, 2):
            assert polyfit(x, y, deg).tobytes() == np.polyfit(x, y, deg).tobytes()
    with pytest.warns(np.exceptions.RankWarning):
        polyfit(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]), 2)
