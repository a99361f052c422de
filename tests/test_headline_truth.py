"""A headline that is right when the truth is known (examples/simulated.yaml's law):

- the table's FLOPs per token extrapolate as a Transformer's count does (weights' k N plus
  lower-order terms), so the parametric law's N* beyond the sizes trained stays the law's;
- a held-out budget's measured N* carries its own 95% interval, and a forecast inside it holds;
- methods whose back-test held are tied, and the tie goes to the narrowest N* interval.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_isoflop import make_points

from scaling_orchestrator.analysis.judge.forecast import Forecast
from scaling_orchestrator.analysis.judge.headline import choose_method, headline
from scaling_orchestrator.analysis.judge.recommend import flops_per_token_model
from scaling_orchestrator.analysis.judge.vertex import vertex_interval
from scaling_orchestrator.analysis.laws.forms.chinchilla import ParametricFit, optimal_6nd
from scaling_orchestrator.models.shape import ModelShape

LAW = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}   # the example's


def shape(depth: int) -> ModelShape:
    """examples/simulated.yaml's dial: d_model = 64 x depth, heads of 64."""
    return ModelShape(n_layer=depth, d_model=64 * depth, n_head=depth, d_ff=256 * depth,
                      vocab_size=32768, seq_len=1024)


def exact_count_table():
    """Sizes of depth 4..48 at 1e18-1e21 FLOPs, C = the exact count x D (fpt / 6N: 1.7 .. 1.05)."""
    shapes = [shape(d) for d in range(4, 49, 4)]
    N = np.array([s.param_counts()["total"] for s in shapes], float)
    per_token = np.array([s.flops_per_token() for s in shapes], float)
    D = 1e20 / per_token
    return make_points(N, D, np.full(len(N), 2.5), np.full(len(N), 1e20), flops=per_token * D)


def test_flops_per_token_extrapolate_as_the_exact_count():
    fpt = flops_per_token_model(exact_count_table())
    for depth in (96, 160):   # 8x and 37x the largest size; a single power law: -18%, -27%
        far = shape(depth)
        assert fpt(far.param_counts()["total"]) == pytest.approx(far.flops_per_token(), rel=0.05)
    law = ParametricFit(**LAW, objective=0.0, n_points=0, converged=True)
    for C in (3e21, 1e23):   # the single power law (slope 0.92) gave +11% and +20%
        n_star = float(np.ravel(law.compute_optimal(C, fpt)[0])[0])
        truth = float(np.ravel(optimal_6nd(LAW["A"], LAW["B"], LAW["alpha"], LAW["beta"], C)[0])[0])
        assert n_star == pytest.approx(truth, rel=0.03)


def test_a_6nd_table_keeps_6n():
    p = exact_count_table()
    six = make_points(p.params, p.tokens, p.loss, p.budget)
    assert flops_per_token_model(six)(3e10) == pytest.approx(1.8e11, rel=1e-9)


def test_the_measured_vertex_has_its_own_interval():
    N = np.geomspace(5e8, 8e9, 9)
    x = np.log10(N) - np.log10(2e9)
    exact = 2.3 + 0.05 * x ** 2
    lo, hi = vertex_interval(N, exact, window=5)
    assert lo == pytest.approx(2e9, rel=1e-6) and hi == pytest.approx(2e9, rel=1e-6)
    noise = np.random.default_rng(0).standard_normal(len(N))
    narrow = vertex_interval(N, exact * np.exp(0.002 * noise), window=9)
    wide = vertex_interval(N, exact * np.exp(0.008 * noise), window=9)
    assert narrow[0] < 2e9 < narrow[1]
    assert wide[1] / wide[0] > narrow[1] / narrow[0] > 1.0
    assert vertex_interval(N[:3], exact[:3], window=5) is None   # no degree of freedom left
    # 4 runs leave one: Student's t at 12.7 would hold any forecast, so the vertex itself judges
    assert vertex_interval(N[2:6], exact[2:6] * np.exp(0.002 * noise[2:6]), window=5) is None


def test_a_forecast_inside_the_measured_interval_holds():
    # The law's N* is 2.78e9; the held-out vertex read 2.2e9 with 95% 1.3e9-3.7e9 (seed 0).
    right = Forecast("params", 2.78e9, 2.2e9, 0.25, observed_ci=(1.3e9, 3.7e9))
    assert right.error == pytest.approx(0.264, abs=1e-3) and right.passed and right.score == 0
    assert Forecast("params", 2.78e9, 2.2e9, 0.25).passed is False   # as exact truth: a miss
    far = Forecast("params", 5.0e9, 2.2e9, 0.25, observed_ci=(1.3e9, 3.7e9))
    assert far.passed is False and far.score == pytest.approx((5.0 / 3.7 - 1) / 0.25)
    assert Forecast.from_dict(right.to_dict(), "params") == right


def held_twice() -> dict:
    """Parametric and IsoFLOP both held; IsoFLOP closer to the measured N*, parametric's
    interval at the largest target narrower (1.7x against 5.5x)."""
    cis = {"parametric": (2.9e10, [2.3e10, 3.9e10]), "isoflop": (3.3e10, [1.4e10, 7.7e10])}
    result = {m: {"fittable": True, "a": 0.5, "b": 0.5} for m in cis}
    result["compute_optimal"] = [
        {"flops": C, "method": m, "params": n * C / 1e23, "tokens": 1e11, "loss": 2.0,
         "ci95": {"params": [v * C / 1e23 for v in ci], "tokens": None, "loss": None}}
        for C in (3e21, 1e23) for m, (n, ci) in cis.items()]

    def summary(params_error):
        judged = {"judged": True, "threshold": 0.25, "passed": True, "held_out_flops": 1e21}
        return {"tier": 0, "passed": True, "loss": {**judged, "error": 0.001, "threshold": 0.03},
                "params": {**judged, "error": params_error}}
    result["backtest"] = {"fittable": True, "ranking": ["isoflop", "parametric"],
                          "methods": {"parametric": summary(0.2), "isoflop": summary(0.05)},
                          "budgets": [{"held_out_flops": 1e21, "caveat": ""}]}
    return result


def test_a_tie_goes_to_the_narrowest_interval():
    method, why = choose_method(held_twice())
    assert method == "parametric"
    assert why.startswith("its back-test held, as did isoflop's (closer); a tie within the "
                          "thresholds goes to the narrowest N* interval (1.7x against 5.5x")
    assert {h.method for h in headline(held_twice(), largest_params=1.3e10)} == {"parametric"}
