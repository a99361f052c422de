"""Law choice (--law NAME|auto), unique tokens, derived N, and `scaling predict`."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from test_fit import points_table
from test_isoflop import chinchilla_grid

from scaling_orchestrator.analysis import Columns, FitOptions, fit
from scaling_orchestrator.analysis.data.points import final_rows
from scaling_orchestrator.analysis.judge.headline import degenerate
from scaling_orchestrator.analysis.laws.choice import held_out_slice
from scaling_orchestrator.analysis.predict import predict_table
from scaling_orchestrator.cli.analysis import add_fit_parser, add_predict_parser


def _cli(command, argv):
    parser = argparse.ArgumentParser(prog="scaling")
    sub = parser.add_subparsers()
    add_fit_parser(sub)
    add_predict_parser(sub)
    args = parser.parse_args([command, *argv])
    return args.func(args)


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


@pytest.fixture(scope="module")
def grid_table():
    return points_table(chinchilla_grid(noise=0.002, seed=3))


@pytest.fixture(scope="module")
def auto(grid_table):
    return fit(grid_table, options=FitOptions(law="auto", n_bootstrap=0, target_flops=(1e20,)))


@pytest.mark.slow  # seconds of fitting
def test_auto_scores_every_form_on_the_largest_budget(auto, grid_table):
    law = auto.to_dict()["law"]
    names = {c["name"]: c for c in law["candidates"]}
    assert set(names) == {"chinchilla", "kaplan", "farseer", "data_constrained"}
    assert "unique-tokens" in names["data_constrained"]["skipped"]
    scored = {n: c["held_out_rel_error"] for n, c in names.items() if c["skipped"] is None}
    assert "chinchilla" in scored and law["name"] == min(scored, key=scored.get)
    assert "largest budget" in law["chosen_by"]
    # data from Chinchilla's own law: that form extrapolates to within the 0.2% noise
    assert scored["chinchilla"] < 0.005
    assert auto.to_dict()["parametric"]["law"] == law["name"]


def test_held_out_group_is_the_slice_when_present():
    points = chinchilla_grid(budgets=(1e17, 3e17, 1e18, 3e18))
    group = np.where(np.asarray(points.budget) >= 3e18, "held_out", "")
    fit_rows, test_rows, how = held_out_slice(replace(points, group=group),
                                              final_rows(points))
    assert how == "the held-out group" and len(test_rows) == 9 and len(fit_rows) == 27


@pytest.mark.slow  # seconds of fitting
def test_named_law_is_given_and_default_does_not_move(grid_table):
    plain = fit(grid_table, options=FitOptions(n_bootstrap=0)).to_dict()
    named = fit(grid_table, options=FitOptions(law="chinchilla", n_bootstrap=0)).to_dict()
    assert plain["law"] == {"name": "chinchilla", "chosen_by": "given", "candidates": [], "rejected": []}
    assert plain["parametric"]["alpha"] == named["parametric"]["alpha"]
    assert plain["parametric"]["alpha"] == pytest.approx(0.34, abs=0.05)


def test_bad_law_and_missing_unique_tokens_are_rc2(tmp_path, capsys, grid_table):
    src = tmp_path / "runs.csv"
    pa_csv.write_csv(grid_table, src)
    assert _cli("fit", [str(src), "--law", "hoffmann"]) == 2
    _one_line_error(capsys, "'hoffmann'")
    assert _cli("fit", [str(src), "--law", "data_constrained"]) == 2
    _one_line_error(capsys, "--unique-tokens")
    assert _cli("fit", [str(src), "--law", "data_constrained", "--unique-tokens", "U"]) == 2
    _one_line_error(capsys, "'U'")


@pytest.mark.slow  # seconds of fitting
def test_unique_tokens_reach_the_data_constrained_fit_and_backtest(grid_table):
    D = grid_table.column("tokens").to_numpy()
    table = grid_table.append_column("unique", pa.array(D / 4.0))   # 4 epochs everywhere
    result = fit(table, Columns(unique_tokens="unique"), FitOptions(law="data_constrained", n_bootstrap=0))
    out = result.to_dict()
    assert out["parametric"]["law"] == "data_constrained"
    assert out["backtest"]["parametric_fit"]["law"] == "data_constrained"
    assert out["backtest"]["budgets"][-1]["predicted_loss"] is not None
    N, U = result.points.params[:3], result.points.unique[:3]
    assert np.all(np.isfinite(result.predict(N, D[:3], U)))


@pytest.mark.slow  # seconds of fitting
def test_params_derived_from_flops_and_tokens(grid_table):
    table = grid_table.drop_columns(["params"])
    result = fit(table, options=FitOptions(n_bootstrap=0))
    assert result.to_dict()["data"]["derived"] == ["params = flops / (6 tokens)"]
    N = grid_table.column("params").to_numpy()
    np.testing.assert_allclose(np.sort(result.points.params), np.sort(N), rtol=1e-9)


@pytest.mark.slow  # seconds of fitting
def test_llama3_points_fit_from_the_command_line_without_params(tmp_path, capsys, reference_data):
    llama3 = reference_data("llama3_isoflops_czech", "isoflops_points.csv")
    out = tmp_path / "fit.json"
    rc = _cli("fit", [str(llama3), "--flops", "compute_budget", "--tokens", "training_tokens",
                      "--loss", "validation_loss", "--bootstrap", "0", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["data"]["derived"] == ["params = compute_budget / (6 training_tokens)"]
    assert data["data"]["n_final_points"] == 133 and data["parametric"]["fittable"]


@pytest.mark.slow  # seconds of fitting
def test_predict_cli_matches_fit_result_predict(tmp_path, capsys, grid_table):
    src, fit_json = tmp_path / "runs.csv", tmp_path / "fit.json"
    pa_csv.write_csv(grid_table, src)
    assert _cli("fit", [str(src), "--bootstrap", "20", "--json", str(fit_json)]) == 0
    result = fit(grid_table, options=FitOptions(n_bootstrap=20))
    N, D = np.array([1e9, 3e9]), np.array([2e10, 6e10])
    points = tmp_path / "points.csv"
    pa_csv.write_csv(pa.table({"flops": 6 * N * D, "tokens": D, "name": ["a", "b"]}), points)
    out = tmp_path / "pred.csv"
    assert _cli("predict", [str(fit_json), str(points), "--out", str(out)]) == 0
    got = pa_csv.read_csv(out)
    samples = json.loads(fit_json.read_text())["parametric"]["samples"]
    assert 10 <= len(samples) <= 20 and all(len(row) == 5 for row in samples)
    loss, lo, hi = result.predict(N, D, interval=True)
    np.testing.assert_allclose(got.column("predicted_loss").to_numpy(), loss, rtol=1e-9)
    np.testing.assert_allclose(got.column("predicted_loss_lo").to_numpy(), lo, rtol=1e-9)
    np.testing.assert_allclose(got.column("predicted_loss_hi").to_numpy(), hi, rtol=1e-9)
    assert np.all(lo <= loss) and np.all(loss <= hi)
    assert got.column("name").to_pylist() == ["a", "b"]


@pytest.mark.slow  # seconds of fitting
def test_predict_without_bootstrap_has_no_interval_and_flops_params_give_d(grid_table):
    fitted = fit(grid_table, options=FitOptions(n_bootstrap=0))
    N, D = np.array([1e9]), np.array([2e10])
    table = predict_table(fitted.to_dict(), pa.table({"params": N, "flops": 6 * N * D}))
    assert "predicted_loss_lo" not in table.column_names
    assert table.column("predicted_loss")[0].as_py() == pytest.approx(
        float(fitted.predict(N, D)[0]), rel=1e-12)


@pytest.mark.slow  # seconds of fitting
def test_predict_points_missing_a_column_is_rc2(tmp_path, capsys, grid_table):
    fit_json, points = tmp_path / "fit.json", tmp_path / "points.csv"
    fit_json.write_text(json.dumps(fit(grid_table, options=FitOptions(n_bootstrap=0)).to_dict()))
    pa_csv.write_csv(pa.table({"tokens": [1e10]}), points)
    assert _cli("predict", [str(fit_json), str(points), "--out", str(tmp_path / "o.csv")]) == 2
    _one_line_error(capsys, "'params'")


def test_degenerate_checks_follow_the_form():
    farseer = {"fittable": True, "law": "farseer", "E": -0.5, "s": 1.0, "q": 0.1}
    assert degenerate({"parametric": farseer}) == []   # Farseer's E is no loss floor
    chinchilla = {"fittable": True, "E": 1e-6, "A": None, "alpha": 5.0}
    found = degenerate({"parametric": chinchilla})
    assert any("no loss floor" in f for f in found) and "A not finite" in found
    assert any(f.startswith("alpha = 5") for f in found)
    dc = {"fittable": True, "law": "data_constrained", "E": 1.7, "R_D_star": None}
    assert degenerate({"parametric": dc}) == []   # R_D* = inf: no repeats, not an overflow


@pytest.mark.slow  # seconds of fitting
def test_report_shows_the_forms_side_by_side(auto, tmp_path):
    paths = auto.write_report(tmp_path / "report")
    text = paths["markdown"].read_text()
    assert "held-out mean |rel. error|" in text and "kaplan" in text
    assert f"{auto.law.name} (chosen)" in text
    assert "law: " in auto.summary()
