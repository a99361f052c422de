"""The fit API: fit(source, columns, options) on a path, a pyarrow Table or a pandas DataFrame,
a bad field refused in one line naming it, and fit.json read back by FitResult.from_dict /
FitResult.load (the one reader of it): the round trip, and the same predictions from either."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from test_fit import points_table
from test_hparams import hparam_rows
from test_isoflop import chinchilla_grid
from test_report import result_row

from scaling_orchestrator.analysis import Columns, FitOptions, FitResult, fit
from scaling_orchestrator.analysis.data.schema import rows_to_table
from scaling_orchestrator.analysis.errors import ABSENT
from scaling_orchestrator.analysis.methods.hparam_laws import load_lr_law
from scaling_orchestrator.analysis.predict import predict_table

LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. Eq. 10
# How the parametric law was found, not what it is: the laws' law_from_dict keeps no start count.
DIAGNOSTICS = ("n_starts",)


def curve_rows(per_token=lambda n: 6.0 * n):
    """5 budgets x 7 sizes, 4 evaluations per trial on the law (0.2% noise); the table's FLOPs
    per token are per_token(N)."""
    rng, rows = np.random.default_rng(0), []
    for budget in (1e16, 3e16, 1e17, 3e17, 1e18):
        for k, n in enumerate(0.6 * budget ** 0.45 * np.logspace(-0.6, 0.6, 7)):
            d_final = budget / (6 * n)
            for j, frac in enumerate((0.25, 0.5, 0.75, 1.0)):
                d = frac * d_final
                loss = LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]
                row = result_row(f"{int(budget):x}{k:02d}"[-16:], budget, n, d,
                                 loss * (1 + 0.002 * rng.standard_normal()), j + 1, frac == 1.0)
                rows.append(dict(row, flops=per_token(n) * int(d)))
    return rows


@pytest.fixture(scope="module")
def mixed():
    """Curves, a held-out-by-largest back-test, bootstrap intervals and both hparam laws."""
    table = rows_to_table(curve_rows() + hparam_rows(batches=5))
    return fit(table, options=FitOptions(n_bootstrap=30, seed=1))


def _without_diagnostics(plain: dict) -> dict:
    plain = copy.deepcopy(plain)
    for key in DIAGNOSTICS:
        (plain.get("parametric") or {}).pop(key, None)
    return plain


def test_fit_takes_a_source_and_two_frozen_dataclasses():
    assert list(inspect.signature(fit).parameters) == ["source", "columns", "options", "name"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FitOptions().n_bootstrap = 5
    assert FitOptions(target_flops=np.array([1e20]), seed=np.int64(3)).target_flops == (1e20,)


def test_a_dataframe_a_table_and_a_csv_give_the_same_fit(tmp_path):
    pd = pytest.importorskip("pandas")
    table = points_table(chinchilla_grid(noise=0.002, seed=2))
    path = tmp_path / "runs.csv"
    pa_csv.write_csv(table, path)
    options = FitOptions(n_bootstrap=0, target_flops=(1e20,))
    fits = {
        "table": fit(table, options=options),
        "DataFrame": fit(table.to_pandas(), {"loss": "val_loss"}, {"n_bootstrap": 0, "target_flops": [1e20]}),
        str(path): fit(str(path), Columns(), options),
    }
    assert isinstance(table.to_pandas(), pd.DataFrame)
    plain = {name: r.to_dict() for name, r in fits.items()}
    for name, out in plain.items():
        assert out["data"].pop("source") == name
    first = plain["table"]
    assert first["parametric"]["fittable"] and all(out == first for out in plain.values())


@pytest.mark.parametrize(("call", "error", "needle"), [
    (lambda t: fit(t, Columns(loss="nope"), {"n_bootstrap": 0}), ValueError, "loss column 'nope' not found"),
    (lambda t: fit(t, {"loss": "val_loss", "los": "x"}), ValueError, "columns: unknown field 'los'"),
    (lambda t: fit(t, options={"n_boot": 5}), ValueError, "options: unknown field 'n_boot'"),
    (lambda t: fit(t, options=FitOptions(n_bootstrap=-1)), ValueError, "n_bootstrap=-1"),
    (lambda t: fit(t, options=FitOptions(window=2)), ValueError, "window=2"),
    (lambda t: fit(t, options=FitOptions(target_flops=1e21)), ValueError, "target_flops=1e+21"),
    (lambda t: fit(t, options=FitOptions(on_corrupt="ignore")), ValueError, "on_corrupt='ignore'"),
    (lambda t: fit(t, Columns(param_convention="embedding")), ValueError, "param_convention='embedding'"),
    (lambda t: fit(t, Columns(params="")), ValueError, "columns.params=''"),
    (lambda t: fit(t, options=FitOptions(law="hoffmann")), ValueError, "law='hoffmann'"),
    (lambda t: fit(t, options=[("n_bootstrap", 0)]), TypeError, "options: a list"),
    (lambda t: fit(42), TypeError, "source: a int"),
])
def test_a_bad_field_is_one_line_naming_it(call, error, needle):
    table = points_table(chinchilla_grid())
    with pytest.raises(error) as info:
        call(table)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_fit_json_round_trips(mixed, tmp_path):
    plain = mixed.to_dict()
    assert plain["envelope"]["fittable"] and plain["lr_law"]["fittable"] and plain["batch_law"]["fittable"]
    assert plain["backtest"]["fittable"] and plain["parametric"]["samples"]
    again = FitResult.from_dict(json.loads(json.dumps(plain))).to_dict()
    assert _without_diagnostics(again) == _without_diagnostics(plain)
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(plain))
    assert _without_diagnostics(FitResult.load(path).to_dict()) == _without_diagnostics(plain)


def test_unfit_sections_round_trip_too():
    hparam_only = fit(rows_to_table(hparam_rows()), options=FitOptions(n_bootstrap=0))
    three = [result_row(f"s{i}", c, n, c / (6 * n), loss, 1, True)
             for i, (n, c, loss) in enumerate(((1e7, 6e16, 3.0), (2e7, 1.2e17, 2.9), (4e7, 2.4e17, 2.8)))]
    too_few = fit(rows_to_table(three), options=FitOptions(n_bootstrap=0))
    for result in (hparam_only, too_few):
        plain = result.to_dict()
        assert not plain["parametric"]["fittable"]
        assert FitResult.from_dict(plain).to_dict() == plain


def test_a_loaded_fit_predicts_and_recommends_as_the_fitted_one(mixed):
    loaded = FitResult.from_dict(json.loads(json.dumps(mixed.to_dict())))
    N, D = np.array([3e7, 1e8]), np.array([1e9, 4e9])
    for got, want in zip(loaded.predict(N, D, interval=True), mixed.predict(N, D, interval=True)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    for C in (*mixed.target_flops, 5e19):   # the recorded targets and one off them
        want, got = mixed.compute_optimal(C, "parametric"), loaded.compute_optimal(C, "parametric")
        assert got.params == pytest.approx(want.params, rel=1e-6)
        assert got.tokens == pytest.approx(want.tokens, rel=1e-6)
        np.testing.assert_allclose(got.ci95["params"], want.ci95["params"], rtol=1e-6)
        iso = loaded.compute_optimal(C, "isoflop")
        assert iso.params == pytest.approx(mixed.compute_optimal(C, "isoflop").params, rel=1e-12)
        assert iso.loss == pytest.approx(mixed.compute_optimal(C, "isoflop").loss, rel=1e-12)
    assert loaded.target_flops == mixed.target_flops
    assert loaded.lr_law.predict(1e7) == pytest.approx(mixed.lr_law.predict(1e7), rel=1e-12)
    assert loaded.batch_law.x_range == mixed.batch_law.x_range
    assert loaded.points is None and loaded.summary()


def test_a_loaded_fit_keeps_the_tables_flops_per_token():
    """D* = C / fpt(N*) with the table's per-token FLOPs (here 6.6 N^1.01, not 6N): read back
    off the recorded recommendations, so D* from fit.json matches the fit's at any C."""
    rows = curve_rows(per_token=lambda n: 6.6 * n ** 1.01)
    fitted = fit(rows_to_table(rows), options=FitOptions(n_bootstrap=0))
    loaded = FitResult.from_dict(fitted.to_dict())
    assert fitted.flops_per_token(1e8) == pytest.approx(6.6e8 * 10 ** 0.08, rel=1e-6)
    assert loaded.flops_per_token(1e8) == pytest.approx(fitted.flops_per_token(1e8), rel=1e-9)
    for C in (3e18, 7e20):
        want, got = fitted.compute_optimal(C, "parametric"), loaded.compute_optimal(C, "parametric")
        assert (got.params, got.tokens) == pytest.approx((want.params, want.tokens), rel=1e-6)
        assert got.tokens != pytest.approx(C / (6 * got.params), rel=1e-3)   # not 6N


def test_load_names_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        FitResult.load(tmp_path / "absent.json")
    cases = {
        "text.json": ("not json", "is not JSON"),
        "shape.json": (json.dumps([{"budget_flops": 1e18}]), "not a `scaling fit --json` structure"),
        "broken.json": (json.dumps({"isoflop": {"fittable": True, "a": 0.5}}), "isoflop: missing key 'b'"),
    }
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=needle) as info:
            FitResult.load(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)


def test_a_partial_fit_json_says_what_it_lacks(tmp_path):
    """An lr law alone (what the planner's train.lr: {from_fit} needs): every other section is
    absent, and predict says so instead of failing on a key."""
    law = {"fittable": True, "coefficient": 0.3, "exponent": -0.5, "n_range": [3e4, 2e5]}
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"lr_law": law}))
    loaded = FitResult.load(path)
    assert loaded.parametric.reason == ABSENT and loaded.batch_law.reason == ABSENT
    with pytest.raises(ValueError, match=f"not fittable \\({ABSENT}\\)"):
        loaded.predict(1e8, 2e9)
    lr = load_lr_law(path)
    assert (lr.coefficient, lr.exponent, lr.n_range) == (0.3, -0.5, (3e4, 2e5))
    assert lr(1e4) == pytest.approx(loaded.lr_law.predict(1e4)) == pytest.approx(0.003)


def test_predict_table_takes_a_fit_result_or_its_dict(mixed):
    points = pa.table({"params": [3e7], "tokens": [1e9]})
    by_result, by_dict = predict_table(mixed, points), predict_table(mixed.to_dict(), points)
    assert by_result.equals(by_dict) and "predicted_loss_lo" in by_result.column_names
