"""Approach 2 (IsoFLOP parabolas): known-truth recovery, Porian et al. 2024 and Llama 3 exponents."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scaling_orchestrator.analysis.data.load import Points
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.isoflop import fit_budget, fit_isoflop


def make_points(N, D, L, budget, run=None, final=None, flops=None) -> Points:
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    n = len(L)
    return Points(params=N, tokens=D, flops=6 * N * D if flops is None else np.asarray(flops),
                  loss=L, run=np.asarray(run if run is not None else [f"r{i}" for i in range(n)]),
                  budget=np.asarray(budget, dtype=float),
                  final=np.ones(n, bool) if final is None else np.asarray(final, bool),
                  excluded={}, source="test")


def chinchilla_grid(budgets=(1e17, 3e17, 1e18, 3e18, 1e19), n_sizes=9, noise=0.0, seed=0,
                    E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28):
    """IsoFLOP grid from a known law (Hoffmann et al. 2022 Eq. 10): a = beta/(alpha+beta)."""
    rng = np.random.default_rng(seed)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    rows = []
    for C in budgets:
        n_opt = G * (C / 6) ** (beta / (alpha + beta))
        for N in n_opt * np.logspace(-0.8, 0.8, n_sizes):
            D = C / (6 * N)
            L = E + A / N ** alpha + B / D ** beta + noise * rng.standard_normal()
            rows.append((N, D, L, C))
    N, D, L, C = map(np.array, zip(*rows))
    return make_points(N, D, L, C)


def test_known_law_recovers_exponents():
    fit = fit_isoflop(chinchilla_grid(), n_bootstrap=0)
    # a = beta / (alpha + beta) = 0.28 / 0.62 = 0.4516; b = 0.5484
    assert fit.a == pytest.approx(0.28 / 0.62, abs=0.03)
    assert fit.b == pytest.approx(0.34 / 0.62, abs=0.03)
    assert fit.a + fit.b == pytest.approx(1.0, abs=1e-6)  # D* = C/(6N*) exactly under 6ND
    assert all(not o.edge for o in fit.budgets)


def test_noisy_grid_bootstrap_interval_covers_truth():
    fit = fit_isoflop(chinchilla_grid(noise=0.004, seed=3), n_bootstrap=60, seed=1)
    lo, hi = fit.ci95["a"]
    assert lo < hi
    assert lo - 0.03 <= 0.28 / 0.62 <= hi + 0.03
    assert fit.samples.shape[1] == 4


def test_edge_budget_flagged_and_left_out():
    p = chinchilla_grid()
    # Shift the last budget's sizes so its minimum sits at the smallest N of its grid.
    keep = ~((p.budget == 1e19) & (p.params < np.median(p.params[p.budget == 1e19])))
    q = make_points(p.params[keep], p.tokens[keep], p.loss[keep], p.budget[keep])
    fit = fit_isoflop(q)
    flags = {o.flops: o.edge for o in fit.budgets}
    assert flags[1e19] is True and flags[1e17] is False
    assert len(fit.interior) == 4


def test_a_vertex_past_every_size_is_an_edge():
    # Seven sizes whose lowest loss is the 6th, yet the parabola, widened to all seven, puts its
    # vertex past the largest: an extrapolation, left out of the power law like an edge.
    sizes = np.logspace(8, 9, 7)
    loss = np.array([2.024, 2.01, 2.012, 2.018, 2.022, 1.991, 2.015])
    optimum = fit_budget(1e19, sizes, 1e19 / (6 * sizes), loss, window=5)
    assert optimum.fittable and optimum.edge and optimum.window == 7
    assert optimum.params_opt > sizes[-1]


def test_unfittable_budgets_say_why():
    o = fit_budget(1e18, np.array([1e6, 2e6]), np.array([1e9, 5e8]), np.array([3.0, 2.9]))
    assert not o.fittable and "2 point" in o.reason
    concave = fit_budget(1e18, np.array([1e6, 2e6, 4e6]), np.array([4e9, 2e9, 1e9]),
                         np.array([3.0, 3.2, 3.0]))
    assert not concave.fittable and "not convex" in concave.reason


def test_single_budget_or_one_point_per_budget_is_not_fittable():
    p = chinchilla_grid(budgets=(1e18,))
    with pytest.raises(NotFittable, match="interior budget"):
        fit_isoflop(p)
    one = make_points([1e7, 2e7, 4e7], [1e9, 2e9, 4e9], [3.0, 2.8, 2.6], [6e16, 2.4e17, 9.6e17])
    with pytest.raises(NotFittable):
        fit_isoflop(one)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


PORIAN_CASES = [  # (source_file, config_label, dataset) -> their weighted Table 1 exponent a
    ("data/summary_df.pickle.xz", "Optimizer tuning (no decay)", "rw", 0.4969),
    ("data/summary_df.pickle.xz", "Correcting warmup", "rw", 0.6020),
    ("data/summary_df.pickle.xz", "Counting last layer FLOPs", "rw", 0.7065),
    ("data/summary_df_owt2.pickle.xz", "Correcting warmup", "owt2", 0.6032),
]


@pytest.mark.parametrize("source_file,config,dataset,a_ref", PORIAN_CASES)
def test_porian_window_parabola_matches_table1(source_file, config, dataset, a_ref, reference_data):
    rows = _read_csv(reference_data("porian2024_resolving", "isoflop_points.csv"))
    sel = [r for r in rows if (r["source_file"], r["config_label"], r["dataset"])
           == (source_file, config, dataset)]
    fits = [r for r in _read_csv(reference_data("porian2024_resolving", "power_law_fits.csv"))
            if (r["source_file"], r["config_label"], r["dataset"], r["fit_kind"])
            == (source_file, config, dataset, "weighted")]
    assert float(fits[0]["n_exponent"]) == pytest.approx(a_ref, abs=1e-4)
    N, D, L, C = (np.array([float(r[k]) for r in sel])
                  for k in ("params", "tokens", "loss", "flops_budget"))
    fit = fit_isoflop(make_points(N, D, L, C), window=5)
    assert fit.a == pytest.approx(a_ref, abs=0.02)
    assert fit.b == pytest.approx(1 - a_ref, abs=0.02)  # their flops = 6ND exactly


def test_llama3_tokens_exponent(reference_data):
    rows = _read_csv(reference_data("llama3_isoflops_czech", "isoflops_points.csv"))
    C, D, L = (np.array([float(r[k]) for r in rows])
               for k in ("compute_budget", "training_tokens", "validation_loss"))
    # Only C and D were digitised, so N = C / (6D) and the parabola runs in log D.
    fit = fit_isoflop(make_points(C / (6 * D), D, L, C), axis="tokens", window=5)
    assert fit.b == pytest.approx(0.53, abs=0.03)  # Llama 3 report: D* = 0.29 C^0.53
    assert len(fit.interior) >= 8
