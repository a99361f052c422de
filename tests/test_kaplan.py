"""Kaplan et al. 2020 single-variable laws and the L*(C) frontier (Porian et al. 2024 reference)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from test_isoflop import chinchilla_grid, make_points

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.single_variable import fit_frontier, fit_kaplan, fit_single


def test_single_laws_recover_kaplan_constants():
    # Kaplan Eq. 1.1 / 1.2: alpha_N = 0.076, N_c = 8.8e13; alpha_D = 0.095, D_c = 5.4e13.
    N = np.repeat(np.logspace(6, 9, 7), 3)
    D = np.tile([1e9, 1e10, 1e11], 7)
    # The largest-D row per size follows L(N); the others sit above it (data-limited).
    L = (8.8e13 / N) ** 0.076 + 0.3 * (1e11 / D - 1) / 100
    law = fit_single(N, D, L, "N")
    assert law.exponent == pytest.approx(0.076, rel=1e-9)
    assert law.x_c == pytest.approx(8.8e13, rel=1e-6)
    assert law.n_points == 7
    D2 = np.repeat(np.logspace(8, 11, 7), 2)
    N2 = np.tile([1e7, 1e9], 7)
    L2 = (5.4e13 / D2) ** 0.095 + np.where(N2 < 1e9, 0.05, 0.0)
    law_d = fit_single(D2, N2, L2, "D")
    assert law_d.exponent == pytest.approx(0.095, rel=1e-9)
    assert law_d.x_c == pytest.approx(5.4e13, rel=1e-6)


def test_single_law_refuses_too_few_sizes_or_rising_loss():
    with pytest.raises(NotFittable, match="2 distinct N"):
        fit_single([1e6, 1e6, 2e6], [1e9, 2e9, 1e9], [3.0, 2.9, 2.8], "N")
    with pytest.raises(NotFittable, match="does not fall"):
        fit_single([1e6, 1e7, 1e8], [1e9, 1e9, 1e9], [2.0, 2.5, 3.0], "N")


def test_frontier_recovers_known_saturating_law():
    C = np.logspace(16, 20, 9)
    L = 1.8 + 2000.0 * C ** -0.2
    f = fit_frontier(C, L)
    assert (f.E, f.alpha) == pytest.approx((1.8, 0.2), rel=1e-4)
    assert f.A == pytest.approx(2000.0, rel=1e-3)
    with pytest.raises(NotFittable, match="needs 4"):
        fit_frontier(C[:3], L[:3])


@pytest.mark.parametrize("config,E_ref,A_ref,alpha_ref", [
    ("Cosine decay", 3.08184, 562235.9, 0.335866),        # power_law_fits.csv, fit_kind=basic
    ("Correcting warmup", 3.23300, 963055.2, 0.353259),
])
def test_frontier_matches_porian_on_their_optima(config, E_ref, A_ref, alpha_ref, reference_data):
    path = reference_data("porian2024_resolving", "isoflop_optima.csv")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["config_label"] == config
                and r["dataset"] == "rw" and r["source_file"] == "data/summary_df.pickle.xz"]
    # Porian et al. fit L*(C) over the budgets 1.25e16 .. 4e17 (their "fitted over 1e16-5e17").
    sel = [r for r in rows if float(r["flops_budget"]) <= 5e17 and r["loss_opt"]]
    f = fit_frontier([float(r["flops_budget"]) for r in sel], [float(r["loss_opt"]) for r in sel])
    assert f.n_points == 6
    assert f.E == pytest.approx(E_ref, abs=2e-3)
    assert f.alpha == pytest.approx(alpha_ref, abs=2e-3)
    assert f.A == pytest.approx(A_ref, rel=0.05)


def test_fit_kaplan_reports_each_piece():
    out = fit_kaplan(chinchilla_grid())
    assert out.L_of_N.fittable and out.L_of_D.fittable
    assert out.frontier.fittable and out.frontier.n_points == 5
    # The grid's minima follow E + A C^-alpha with E near the law's E = 1.69 (Hoffmann Eq. 10).
    assert 1.3 < out.frontier.E < 1.75
    plain = out.to_dict()
    assert plain["fittable"] is True and plain["frontier"]["E"] == out.frontier.E
    assert set(plain["L_of_N"]) == {"fittable", "alpha", "N_c", "n_points"}
    assert plain["L_of_D"]["D_c"] == out.L_of_D.x_c
    few = make_points([1e7, 2e7, 4e7], [1e9, 1e9, 1e9], [3.0, 2.9, 2.8], [6e16] * 3)
    out = fit_kaplan(few).to_dict()
    assert out["frontier"] == {"fittable": False,
                               "reason": "1 budget(s); E + A C^-alpha has 3 constants "
                               "and needs 4 budgets"}
    assert out["L_of_D"]["fittable"] is False
