"""Law forms: the registry, each form's gradient, known-truth recovery, compute-optimal
allocation, the run bootstrap through fit_law, and what a table cannot identify."""

import itertools

import numpy as np
import pyarrow as pa
import pytest

from scaling_orchestrator.analysis import fit
from scaling_orchestrator.analysis.errors import Unfit
from scaling_orchestrator.analysis.laws.engine import Objective
from scaling_orchestrator.analysis.laws.forms.base import FittedLaw, Form
from scaling_orchestrator.analysis.laws.optimum import search_optimum
from scaling_orchestrator.analysis.laws.registry import (
    ParametricResult,
    fit_law,
    forms,
    law_form,
    law_from_dict,
)

TRUTH = {
    "chinchilla": dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    # Kaplan et al. 2020, Table 2.
    "kaplan": dict(alpha_N=0.076, alpha_D=0.095, N_c=8.8e13, D_c=5.4e13),
    # A Farseer surface within 0.3 nats of Epoch's Chinchilla law over 1e7..1e10 parameters;
    # beta(N) falls from 0.366 (1e7) to 0.334 (1e10).
    "farseer": dict(s=20.0, q=-0.2, S=0.48, B=-0.5, b=0.05, Q=8.79, A=-0.1, a=0.05, E=-0.78),
    # Muennighoff et al. 2023's C4 law (datablations): e^0.6255, e^6.2554, e^7.3050, tied.
    "data_constrained": dict(E=1.8691, A=520.83, B=1487.72, alpha=0.35266, beta=0.35266,
                             R_D_star=15.387756, R_N_star=5.309743),
}
OTHER_FORMS = ("kaplan", "farseer", "data_constrained")


def design(seed: int = 0, sizes: int = 12, ratios: int = 10):
    """sizes x ratios runs: N 1e7..1e10, D/N 2..400, epochs from {1, 1, 2, 4, .., 64}."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(7, 10, sizes), ratios)
    D = N * np.tile(np.logspace(np.log10(2), np.log10(400), ratios), sizes)
    return N, D, D / rng.choice([1, 1, 2, 4, 8, 16, 32, 64], len(N)), rng


def noisy(name: str, noise: float, seed: int = 0, **shape):
    N, D, U, rng = design(seed, **shape)
    L = forms()[name].predict_values(TRUTH[name], N, D, U)
    return N, D, L * np.exp(noise * rng.standard_normal(len(N))), U


def truth_law(name: str) -> FittedLaw:
    return FittedLaw(forms()[name], TRUTH[name], 0.0, 0, True)


def test_registry_holds_every_form_with_formula_citation_and_columns():
    assert list(forms())[0] == "chinchilla"
    assert set(forms()) == {"chinchilla", "kaplan", "farseer", "data_constrained"}
    for name, form in forms().items():
        assert form.name == name and form.formula.startswith("L(N, D")
        assert "arXiv:" in form.citation and len(form.constants) >= 4
    assert forms()["data_constrained"].required_columns == ("unique_tokens",)
    assert forms()["kaplan"].required_columns == ()
    with pytest.raises(ValueError, match="law='bogus': allowed forms: 'chinchilla'"):
        law_form("bogus")


@pytest.fixture
def tied_form():
    """A form defined here, after the registry was imported, as a user defines one in their own
    module: Chinchilla with one exponent for both terms. Removed from the registry afterwards."""

    class Tied(Form):
        """L(N, D) = E + A/N^gamma + B/D^gamma; inner (a', b', e, gamma) with
        a' = log A - gamma mn, b' = log B - gamma md."""

        name = "test_tied"
        formula = "L(N, D) = E + A/N^gamma + B/D^gamma"
        citation = "a form defined in a test, arXiv: none"
        constants = ("E", "A", "B", "gamma")
        loss_floor = "E"

        def starts(self, cols):
            grid = itertools.product((-3.0, -1.5, 0.0), (-3.0, -1.5, 0.0), (-1.0, 0.0, 0.5), (0.1, 0.3, 0.6))
            return np.array(list(grid))

        def log_loss(self, z, cols, jac=True):
            a, b, e, gamma = (z[:, i : i + 1] for i in range(4))
            fr = cols.frame
            t1, t2 = a - gamma * fr.sn * cols.u, b - gamma * fr.sd * cols.v
            top = np.maximum(np.maximum(t1, t2), e)
            w1, w2, w3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
            total = w1 + w2 + w3
            if not jac:
                return top + np.log(total), None
            p1, p2 = w1 / total, w2 / total
            return top + np.log(total), [p1, p2, w3 / total, -p1 * fr.sn * cols.u - p2 * fr.sd * cols.v]

        def to_outer(self, z, frame):
            a, b, e, gamma = np.atleast_2d(z).T
            with np.errstate(over="ignore"):
                A, B = np.exp(a + gamma * frame.mn), np.exp(b + gamma * frame.md)
                return np.column_stack([np.exp(e), A, B, gamma])

        def to_inner(self, x, frame):
            E, A, B, gamma = np.atleast_2d(x).T
            a, b = np.log(A) - gamma * frame.mn, np.log(B) - gamma * frame.md
            return np.column_stack([a, b, np.log(E), gamma])

        def predict_values(self, P, N, D, U=None):
            return P["E"] + P["A"] / N ** P["gamma"] + P["B"] / D ** P["gamma"]

    yield law_form("test_tied")
    Form.registry.pop("test_tied")
    assert "test_tied" not in forms()


def tied_table(form, truth, noise=0.0):
    """5 budgets x 9 sizes from the law, as a table in our column names."""
    N, D, C = [], [], []
    for budget in np.logspace(17, 21, 5):
        sizes = 0.09 * budget**0.5 * np.logspace(-1, 1, 9)
        N.append(sizes)
        D.append(budget / (6 * sizes))
        C.append(np.full(9, budget))
    N, D, C = (np.concatenate(x) for x in (N, D, C))
    L = form.predict_values(truth, N, D) * np.exp(noise * np.random.default_rng(0).standard_normal(len(N)))
    return pa.table({"params": N, "tokens": D, "flops": 6 * N * D, "val_loss": L, "budget_flops": C,
                     "trial_id": np.arange(len(N)).astype(str), "final": np.ones(len(N), bool)})


TIED = dict(E=1.8, A=400.0, B=1500.0, gamma=0.33)


def test_a_form_defined_after_import_is_found_and_fitted_by_name(tied_form):
    assert type(tied_form).__name__ == "Tied" and list(forms())[-1] == "test_tied"
    table = tied_table(tied_form, TIED)
    law = tied_form.fit(*(table.column(c).to_numpy() for c in ("params", "tokens", "val_loss")))
    for name, value in TIED.items():
        assert law.values[name] == pytest.approx(value, rel=1e-4), name
    assert law.converged and law.predict(1e9, 2e10) == pytest.approx(
        tied_form.predict_values(TIED, 1e9, 2e10), rel=1e-6)


def test_analysis_fit_uses_a_user_form_by_name(tied_form):
    result = fit(tied_table(tied_form, TIED, noise=0.005), options={"law": "test_tied", "n_bootstrap": 20})
    out = result.to_dict()["parametric"]
    assert out["law"] == "test_tied" and len(out["samples"]) == 20
    assert out["gamma"] == pytest.approx(TIED["gamma"], abs=0.02)
    assert out["ci95"]["gamma"][0] <= out["gamma"] <= out["ci95"]["gamma"][1]
    assert law_from_dict(out).predict(1e9, 2e10) == pytest.approx(result.predict(1e9, 2e10), rel=1e-12)


@pytest.mark.parametrize("name", OTHER_FORMS)
def test_gradient_matches_finite_differences(name):
    form = forms()[name]
    N, D, L, U = noisy(name, 0.01)
    cols = form.columns(N, D, L, U)
    z = form.to_inner(np.array([list(TRUTH[name].values())]), cols.frame) * 1.05
    objective = Objective(form, cols, delta=1.0)         # quadratic: smooth for differences
    _, g = objective.value_grad(z)
    for j in range(z.shape[1]):
        step = np.zeros_like(z)
        step[0, j] = 1e-6 * max(1.0, abs(z[0, j]))
        up, down = objective.value_grad(z + step)[0], objective.value_grad(z - step)[0]
        assert g[0, j] == pytest.approx((up - down)[0] / (2 * step[0, j]), rel=1e-5,
                                        abs=1e-9), (name, j)


@pytest.mark.parametrize("name", OTHER_FORMS)
def test_inner_coordinates_round_trip_and_predict_agrees_with_the_fit_objective(name):
    form = forms()[name]
    N, D, L, U = noisy(name, 0.0)
    cols = form.columns(N, D, L, U)
    starts = form.starts(cols)
    np.testing.assert_allclose(form.to_inner(form.to_outer(starts, cols.frame), cols.frame),
                               starts, rtol=1e-9, atol=1e-9)
    z = form.to_inner(np.array([list(TRUTH[name].values())]), cols.frame)
    np.testing.assert_allclose(form.log_loss(z, cols, jac=False)[0][0], np.log(L), atol=1e-12)


def test_chinchilla_thins_its_grid_and_ignores_unique_tokens():
    N, D, L, U = noisy("chinchilla", 0.01)
    law = law_form("chinchilla").fit(N, D, L, U, n_starts=300)
    assert law.n_starts == 300 and law.converged
    assert law.alpha == pytest.approx(TRUTH["chinchilla"]["alpha"], abs=0.02)
    assert law.predict(1e9, 2e10, U=1e9) == law.predict(1e9, 2e10)


def test_kaplan_recovers_its_constants_with_one_percent_noise():
    # Over 6 seeds of this design: alpha_N, alpha_D within 0.0011, 0.0021; N_c, D_c within
    # 15% and 29%; the loss at 10x the largest N within 0.3%.
    law = forms()["kaplan"].fit(*noisy("kaplan", 0.01))
    assert law.alpha_N == pytest.approx(0.076, abs=0.003)
    assert law.alpha_D == pytest.approx(0.095, abs=0.005)
    assert law.N_c == pytest.approx(8.8e13, rel=0.4) and law.D_c == pytest.approx(5.4e13, rel=0.6)
    truth = truth_law("kaplan")
    assert law.predict(1e11, 2e12) == pytest.approx(truth.predict(1e11, 2e12), rel=0.01)


def test_data_constrained_recovers_its_constants_with_one_percent_noise():
    # Over 6 seeds: alpha, beta within 0.011, 0.003; E within 0.016; R_D* within 2.4 of 15.39,
    # R_N* within 1.4 of 5.31; the loss at 10x the largest N within 0.45%.
    law = forms()["data_constrained"].fit(*noisy("data_constrained", 0.01))
    assert law.alpha == pytest.approx(0.3527, abs=0.03)
    assert law.beta == pytest.approx(0.3527, abs=0.01)
    assert law.E == pytest.approx(1.869, abs=0.04)
    assert law.R_D_star == pytest.approx(15.39, abs=5.0)
    assert law.R_N_star == pytest.approx(5.31, abs=3.0)
    assert law.notes == () and law.converged
    assert law.predict(1e11, 2e12, 1e11) == pytest.approx(
        truth_law("data_constrained").predict(1e11, 2e12, 1e11), rel=0.01)


def test_farseer_recovers_its_surface_and_data_exponent_with_noise():
    # beta(N) = exp(A N^a + E) and the floor exp(s N^q + S) are what the data pin: A and E
    # (and B and Q) trade along a ridge when a, b ~ 0.05. Over 6 seeds with 0.1% noise: beta
    # within 0.010 and the floor within 0.007 at 1e7..1e10; the loss at 10x N within 0.12%.
    law = forms()["farseer"].fit(*noisy("farseer", 0.001)[:3])
    truth = truth_law("farseer")
    sizes = np.array([1e7, 1e8, 1e9, 1e10])

    def beta(P):
        return np.exp(P["A"] * sizes ** P["a"] + P["E"])

    def floor(P):
        return np.exp(P["s"] * sizes ** P["q"] + P["S"])

    np.testing.assert_allclose(beta(law.values), beta(TRUTH["farseer"]), atol=0.02)
    np.testing.assert_allclose(floor(law.values), floor(TRUTH["farseer"]), atol=0.02)
    assert law.q == pytest.approx(-0.2, abs=0.02)
    np.testing.assert_allclose(law.predict([3e10, 1e11], [6e11, 2e12]),
                               truth.predict([3e10, 1e11], [6e11, 2e12]), rtol=0.005)


def test_farseer_noise_free_surface_gives_back_all_nine_constants():
    N, D, L, _ = noisy("farseer", 0.0)
    law = forms()["farseer"].fit(N, D, L, n_starts=100)
    for name, value in TRUTH["farseer"].items():
        assert law.values[name] == pytest.approx(value, rel=1e-3), name


def test_kaplan_closed_form_optimum_matches_the_search():
    law = truth_law("kaplan")
    C = np.array([1e19, 1e22, 1e25])
    n_closed, d_closed, l_closed = law.compute_optimal(C)
    n_num, d_num, l_num = law.compute_optimal(C, flops_per_token=lambda n: float(6.0 * n))
    np.testing.assert_allclose(n_num, n_closed, rtol=1e-6)
    np.testing.assert_allclose(l_num, l_closed, rtol=1e-12)
    # N* ~ C^(alpha_D / (alpha_N + alpha_D)) = C^0.5556 with Kaplan's constants.
    slope = np.diff(np.log(n_closed)) / np.diff(np.log(C))
    np.testing.assert_allclose(slope, 0.095 / 0.171, rtol=1e-9)
    assert forms()["kaplan"].exponents(law) == pytest.approx((0.095 / 0.171, 0.076 / 0.171))


def test_farseer_optimum_is_a_minimum_on_the_budget_line():
    law = truth_law("farseer")
    C = np.array([1e20, 1e22])
    n_opt, d_opt, loss = law.compute_optimal(C)
    np.testing.assert_allclose(6 * n_opt * d_opt, C, rtol=1e-12)
    for factor in (0.9, 1.1):
        assert np.all(loss < law.predict(n_opt * factor, d_opt / factor))
    assert forms()["farseer"].exponents(law) == (None, None) == law.exponents


def test_data_constrained_optimum_trades_parameters_for_epochs_when_data_runs_out():
    law = truth_law("data_constrained")
    # Unlimited unique data: Chinchilla's Eq. 4 (N' <= N, equal at N = N_opt(D*)).
    n_free, d_free, l_free = law.compute_optimal(1e22)
    chinchilla = FittedLaw(forms()["chinchilla"], {k: TRUTH["data_constrained"][k] for k in
                                                 ("E", "A", "B", "alpha", "beta")}, 0.0, 0, True)
    assert (n_free, l_free) == pytest.approx(chinchilla.compute_optimal(1e22)[::2], rel=1e-12)
    # Fewer unique tokens: smaller models, more epochs (Muennighoff et al. 2023, sec. 5).
    optima = [law.compute_optimal(1e22, unique_tokens=u) for u in (1e11, 1e10, 1e9)]
    n_opt, d_opt, loss = (np.array(v) for v in zip(*optima))
    assert np.all(np.diff(n_opt) < 0) and np.all(np.diff(d_opt) > 0) and np.all(np.diff(loss) > 0)
    assert n_opt[0] < n_free and loss[0] > l_free


def test_search_says_nan_when_the_minimum_is_off_the_grid():
    n_opt, d_opt = search_optimum(lambda n, d: 1.0 / n, np.array([1e20]))
    assert np.isnan(n_opt[0]) and np.isnan(d_opt[0])


@pytest.mark.slow  # seconds of fitting
@pytest.mark.parametrize("name", OTHER_FORMS)
def test_fit_law_bootstraps_every_form_over_runs(name):
    N, D, L, U = noisy(name, 0.01, sizes=8, ratios=8)
    form = law_form(name)
    result = fit_law(form, N, D, L, np.arange(len(N)), n_bootstrap=8, seed=0,
                     flops_per_token=None, U=U)
    assert isinstance(result, ParametricResult) and result.samples.shape == (8, len(form.constants))
    out = result.to_dict()
    assert out["law"] == name and set(form.constants) <= set(out) and out["n_points"] == 64
    for constant in form.constants:
        lo, hi = out["ci95"][constant]
        assert lo <= hi
    # Farseer's a and b are constants (it has no allocation exponents): kept, not nulled
    assert out["a"] == (result.law.values["a"] if name == "farseer" else result.a) is not None
    interval = form.optimal_interval(form.finite_samples(result.samples), 1e21, None)
    assert interval["params_ci"][0] <= interval["params_ci"][1]


def test_data_constrained_needs_unique_tokens_and_refuses_more_than_seen():
    N, D, L, U = noisy("data_constrained", 0.01, sizes=6, ratios=5)
    unfit = fit_law(law_form("data_constrained"), N, D, L, np.arange(len(N)), n_bootstrap=0,
                    seed=0, flops_per_token=None)
    assert isinstance(unfit, Unfit) and unfit.reason.startswith("unique_tokens:")
    with pytest.raises(ValueError, match="unique_tokens: 1 values exceed the tokens"):
        forms()["data_constrained"].fit(N, D, L, np.where(np.arange(len(N)) == 3, 2 * D, U))


def test_data_constrained_without_repeats_or_excess_parameters_is_chinchilla():
    # Single-epoch runs (U = D), each trained past its optimal data (D/N >= 40): no repeats,
    # no N above N_opt(U); neither R_D* nor R_N* is identifiable, so D' = D and N' = N.
    N = np.repeat(np.logspace(7, 10, 8), 5)
    D = N * np.tile([40.0, 80.0, 160.0, 320.0, 640.0], 8)
    chinchilla = FittedLaw(forms()["chinchilla"], TRUTH["chinchilla"], 0.0, 0, True)
    law = forms()["data_constrained"].fit(N, D, chinchilla.predict(N, D), D)
    assert law.R_D_star == np.inf and law.R_N_star == np.inf and len(law.notes) == 2
    for name, value in TRUTH["chinchilla"].items():
        assert law.values[name] == pytest.approx(value, rel=1e-3), name


@pytest.mark.parametrize("name", list(TRUTH))
def test_law_reads_back_from_its_json_section(name):
    law = truth_law(name) if name != "chinchilla" else forms()["chinchilla"].fit(
        *noisy("chinchilla", 0.01)[:3], n_starts=100)
    values = {**law.params(), "law": name} if name != "chinchilla" else {**law.params()}
    if name == "data_constrained":
        values["R_N_star"] = None                    # inf, as strict JSON writes it
        law = FittedLaw(law.form, {**law.values, "R_N_star": np.inf}, 0.0, 0, True)
    back = law_from_dict(values)
    N, D = np.array([1e8, 1e9]), np.array([2e9, 3e10])
    np.testing.assert_allclose(back.predict(N, D, D / 4), law.predict(N, D, D / 4), rtol=1e-15)
    with pytest.raises(ValueError, match="parametric: .* missing for the"):
        law_from_dict({"law": name})
