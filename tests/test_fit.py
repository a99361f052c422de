"""scaling_orchestrator.analysis.fit and FitResult, the envelope (Approach 1), the back-test, the `scaling
fit` CLI."""

from __future__ import annotations

import argparse
import csv
import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from test_isoflop import chinchilla_grid, make_points

from scaling_orchestrator.analysis import FitOptions, FitResult, fit
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.judge.backtest import BY_LARGEST, run_backtest
from scaling_orchestrator.analysis.judge.recommend import flops_per_token_model
from scaling_orchestrator.analysis.methods.envelope import fit_envelope
from scaling_orchestrator.analysis.result import compare_exponents
from scaling_orchestrator.cli.analysis import add_fit_parser

LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. Eq. 10
A_TRUE = 0.28 / 0.62  # beta / (alpha + beta) = 0.4516


def points_table(points) -> pa.Table:
    """Points as a table in our column names (what load_points reads back)."""
    return pa.table(
        {
            "params": points.params,
            "tokens": points.tokens,
            "flops": points.flops,
            "val_loss": points.loss,
            "budget_flops": points.budget,
            "trial_id": np.asarray(points.run).astype(str),
            "final": points.final,
        }
    )


def curves_points(n_sizes=14, evals=30, tokens_per_param=200):
    """Every run trained to 200 N tokens, evaluated at log-spaced token counts on the law."""
    rows = []
    for i, N in enumerate(np.logspace(7, 9.5, n_sizes)):
        d_final = tokens_per_param * N
        for d in np.logspace(np.log10(d_final) - 2.5, np.log10(d_final), evals):
            L = LAW["E"] + LAW["A"] / N ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]
            rows.append((N, d, L, f"r{i}", d == d_final, 6 * N * d_final))
    N, D, L, run, final, budget = map(np.array, zip(*rows))
    return make_points(N, D, L, budget, run=run, final=final)


@pytest.fixture(scope="module")
def typed():
    options = FitOptions(target_flops=(1e19, 1e20), n_bootstrap=40, seed=0)
    return fit(points_table(chinchilla_grid(noise=0.003, seed=5)), options=options)


@pytest.fixture(scope="module")
def result(typed):
    return typed.to_dict()


def test_json_structure_matches_design(result):
    text = json.dumps(result, allow_nan=False)  # plain types only, no NaN
    assert json.loads(text) == result
    par = result["parametric"]
    assert {"E", "A", "B", "alpha", "beta", "n_points", "objective", "ci95"} <= set(par)
    assert set(par["ci95"]) >= {"E", "A", "B", "alpha", "beta", "a", "b"}
    iso = result["isoflop"]
    assert {"a", "b", "budgets", "ci95"} <= set(iso) and set(iso["ci95"]) == {"a", "b"}
    assert all(
        {"flops", "params_opt", "tokens_opt", "loss_opt", "edge", "n_points"} <= set(b)
        for b in iso["budgets"]
    )
    assert {
        "held_out_flops",
        "predicted_loss",
        "observed_loss",
        "rel_error",
        "passed",
        "params_rel_error",
        "budgets",
        "held_out_by",
    } <= set(result["backtest"])
    assert result["backtest"]["held_out_by"] == BY_LARGEST
    assert result["envelope"] == {
        "fittable": False,
        "reason": "no training curves (fewer than two runs with 3+ evaluations)",
    }
    assert {"L_of_N", "L_of_D", "frontier"} <= set(result["kaplan"])
    assert {"a", "b", "flag"} <= set(result["disagreement"])
    assert result["data"]["n_budgets"] == 5 and result["data"]["excluded"] == {}
    assert {"lr_law", "batch_law", "compute_optimal", "frontier_grid"} <= set(result)


def test_compute_optimal_rows_per_target_and_method(result):
    rows = {(r["flops"], r["method"]): r for r in result["compute_optimal"]}
    assert set(rows) == {(c, m) for c in (1e19, 1e20) for m in ("parametric", "isoflop", "envelope", "curve")}
    assert rows[(1e20, "envelope")]["fittable"] is False
    for method in ("parametric", "isoflop"):
        r = rows[(1e20, method)]
        lo, hi = r["ci95"]["params"]
        assert lo <= r["params"] <= hi
        # Truth at 1e20 under 6ND (Chinchilla Eq. 4 with Eq. 10's constants): N* = 6.35e8.
        assert r["params"] == pytest.approx(6.35e8, rel=0.05)
        assert r["tokens"] == pytest.approx(1e20 / (6 * 6.35e8), rel=0.05)
    assert result["parametric"]["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert result["isoflop"]["a"] == pytest.approx(A_TRUE, abs=0.03)
    assert result["backtest"]["passed"] is True and result["backtest"]["rel_error"] < 0.01


def test_fit_result_is_typed_and_answers_questions(typed, result):
    assert isinstance(typed, FitResult)
    law = typed.parametric.law
    assert law.alpha == pytest.approx(LAW["alpha"], abs=0.02) == result["parametric"]["alpha"]
    N, D = np.array([1e8, 3e8]), np.array([2e9, 5e9])
    expected = law.E + law.A / N**law.alpha + law.B / D**law.beta
    assert np.allclose(typed.predict(N, D), expected, rtol=1e-12)
    # At a target the answer is the JSON's row; any other C is answered the same way.
    again = typed.compute_optimal(1e20, method="parametric")
    row = next(r for r in result["compute_optimal"] if r["method"] == "parametric" and r["flops"] == 1e20)
    assert again.params == row["params"] and list(again.ci95["params"]) == row["ci95"]["params"]
    off_grid = typed.compute_optimal(3e20, method="all")
    assert [r.method for r in off_grid] == ["parametric", "isoflop", "envelope", "curve"]
    n_opt = 6.35e8 * 3**A_TRUE  # N* ~ C^a from 6.35e8 at 1e20: 1.04e9 at 3e20
    assert off_grid[0].params == pytest.approx(n_opt, rel=0.05)
    assert off_grid[0].ci95["params"][0] < off_grid[0].params < off_grid[0].ci95["params"][1]
    assert off_grid[2].fittable is False and "no training curves" in off_grid[2].reason
    assert typed.backtest.largest.held_out_flops == 1e19 and typed.backtest.passed


def test_fit_rejects_bad_options():
    table = points_table(chinchilla_grid())
    with pytest.raises(ValueError, match=r"law='nope': allowed forms: 'chinchilla'"):
        fit(table, options=FitOptions(law="nope"))
    with pytest.raises(ValueError, match=r"n_bootstrap=-1"):
        fit(table, options=FitOptions(n_bootstrap=-1))
    with pytest.raises(ValueError, match=r"target_flops"):
        fit(table, options=FitOptions(n_bootstrap=0, target_flops=(-1.0,)))


def test_envelope_recovers_exponent_from_curves():
    fit_ = fit_envelope(curves_points())
    assert fit_.a == pytest.approx(A_TRUE, abs=0.01)
    assert fit_.b == pytest.approx(1 - A_TRUE, abs=0.01)
    assert not fit_.used[0] and fit_.used.sum() >= 20  # the smallest model's stretch is an edge
    with pytest.raises(NotFittable, match="no training curves"):
        fit_envelope(chinchilla_grid())


def test_fit_with_curves_adds_envelope():
    out = fit(points_table(curves_points()), options=FitOptions(n_bootstrap=0, target_flops=(1e20,)))
    assert out.envelope.fittable and out.data.training_curves
    env = out.compute_optimal(1e20, method="envelope")
    assert env.params == pytest.approx(6.35e8, rel=0.1)
    assert out.to_dict()["envelope"]["n_runs"] == 14


def test_backtest_flags_a_bad_forecast():
    p = chinchilla_grid()
    held = p.budget == p.budget.max()
    worse = make_points(p.params, p.tokens, np.where(held, p.loss * 1.10, p.loss), p.budget)
    bt = run_backtest(worse)
    assert bt.held_out_by == BY_LARGEST and bt.held_out_flops == (1e19,)
    assert bt.largest.held_out_flops == 1e19 and bt.passed is False
    assert bt.largest.rel_error == pytest.approx(0.1 / 1.1, abs=0.01)  # x vs observed 1.1x
    with pytest.raises(NotFittable, match="needs 3"):
        run_backtest(chinchilla_grid(budgets=(1e17, 1e18)))


def test_flops_per_token_read_from_table():
    fpt = flops_per_token_model(chinchilla_grid())
    assert fpt(1e8) == pytest.approx(6e8, rel=1e-9)


@pytest.mark.slow  # seconds of fitting
def test_bad_points_are_counted_or_marked_not_fittable():
    p = chinchilla_grid()
    loss = p.loss.copy()
    loss[[0, 10]] = [np.nan, -1.0]
    out = fit(points_table(make_points(p.params, p.tokens, loss, p.budget)), options={"n_bootstrap": 0})
    assert out.data.excluded == {"non-finite": 1, "non-positive": 1}
    assert out.isoflop.fittable
    single = fit(points_table(chinchilla_grid(budgets=(1e18,))), options=FitOptions(n_bootstrap=0))
    assert single.isoflop.fittable is False and "interior budget" in single.isoflop.reason
    assert single.backtest.fittable is False
    assert single.kaplan.frontier.fittable is False
    one = make_points(
        [1e7, 2e7, 4e7, 8e7, 1.6e8],
        [1e9] * 5,
        [3.0, 2.9, 2.8, 2.7, 2.6],
        [6e16, 1.2e17, 2.4e17, 4.8e17, 9.6e17],
    )
    out = fit(points_table(one), options=FitOptions(n_bootstrap=0)).to_dict()
    assert out["isoflop"] == {
        "fittable": False,
        "reason": "0 interior budget(s) with a convex minimum; a power law in C needs at least 2",
    }
    assert {r["method"] for r in out["compute_optimal"] if r.get("fittable") is False} >= {
        "isoflop",
        "envelope",
    }


def test_disagreement_flags_non_overlapping_intervals():
    sections = {
        "parametric": SimpleNamespace(
            fittable=True, a=0.45, b=0.55, ci95={"a": [0.44, 0.46], "b": [0.54, 0.56]}
        ),
        "isoflop": SimpleNamespace(
            fittable=True, a=0.50, b=0.50, ci95={"a": [0.48, 0.52], "b": [0.48, 0.52]}
        ),
        "envelope": SimpleNamespace(fittable=False, reason="no training curves"),
    }
    out = compare_exponents(sections)
    assert out.flag and out.a.intervals_overlap is False
    assert out.to_dict()["a"]["methods"]["isoflop"] == {"value": 0.50, "ci95": [0.48, 0.52]}
    sections["isoflop"].ci95 = {"a": [0.455, 0.52], "b": [0.48, 0.545]}
    assert compare_exponents(sections).flag is False


def _cli(argv):
    parser = argparse.ArgumentParser(prog="scaling")
    add_fit_parser(parser.add_subparsers())
    args = parser.parse_args(["fit", *argv])
    return args.func(args)


def _write_csv(path, points, loss=None):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["params", "tokens", "flops", "val_loss", "budget_flops"])
        for row in zip(
            points.params, points.tokens, points.flops, points.loss if loss is None else loss, points.budget
        ):
            w.writerow(row)


@pytest.mark.slow  # seconds of fitting
def test_cli_fit_writes_json_and_summary(tmp_path, capsys):
    src = tmp_path / "runs.csv"
    _write_csv(src, chinchilla_grid(noise=0.002))
    rc = _cli(
        [
            str(src),
            "--bootstrap",
            "20",
            "--target-flops",
            "1e20",
            "--json",
            str(tmp_path / "fit.json"),
            "--params-threshold",
            "0.4",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "isoflop: a = 0.45" in out and "1e+20  parametric" in out
    assert out.startswith("Recommendation (") and "Warnings: none." in out
    data = json.loads((tmp_path / "fit.json").read_text())
    assert data["isoflop"]["a"] == pytest.approx(A_TRUE, abs=0.03)
    assert data["backtest"]["params_threshold"] == 0.4 and data["warnings"] == []
    [head] = data["headline"]
    assert head["flops"] == 1e20 and head["method"] == data["backtest"]["method"]


@pytest.mark.parametrize(
    "argv_extra,needle",
    [
        (["--loss", "nope"], "'nope'"),
        (["--bootstrap", "-3"], "--bootstrap"),
    ],
)
def test_cli_bad_input_is_one_line_rc2(tmp_path, capsys, argv_extra, needle):
    src = tmp_path / "runs.csv"
    _write_csv(src, chinchilla_grid())
    assert _cli([str(src), *argv_extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_missing_file_and_all_nan(tmp_path, capsys):
    assert _cli([str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err
    src = tmp_path / "nan.csv"
    p = chinchilla_grid()
    _write_csv(src, p, loss=np.full(len(p.loss), np.nan))
    assert _cli([str(src), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "val_loss" in err


@pytest.mark.slow  # seconds of fitting
def test_cli_two_sweeps_refused_and_sweep_picks_one(tmp_path, capsys):
    # Sweep "b" is sweep "a" one nat worse: a fit over both would land between E = 1.69 and 2.69.
    points = chinchilla_grid(noise=0.002)
    src = tmp_path / "runs.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sweep", "params", "tokens", "flops", "val_loss", "budget_flops"])
        for sweep, shift in (("a", 0.0), ("b", 1.0)):
            for row in zip(points.params, points.tokens, points.flops, points.loss + shift, points.budget):
                w.writerow([sweep, *row])
    assert _cli([str(src), "--bootstrap", "0"]) == 2
    assert capsys.readouterr().err == (
        f"scaling fit: error: {src} holds rows of sweeps ['a', 'b']; pass --sweep NAME to fit one\n"
    )
    out = tmp_path / "fit.json"
    for sweep, e in (("a", 1.69), ("b", 2.69)):
        assert _cli([str(src), "--bootstrap", "0", "--sweep", sweep, "--json", str(out)]) == 0
        assert capsys.readouterr().err == ""
        data = json.loads(out.read_text())
        assert data["data"]["n_final_points"] == len(points)
        assert data["parametric"]["E"] == pytest.approx(e, abs=0.05)
        assert data["isoflop"]["a"] == pytest.approx(A_TRUE, abs=0.03)


def test_cli_reads_a_results_dir_once_and_warns_once_per_skipped_file(tmp_path, capsys, monkeypatch):
    """The shape-study check and the fit share one read of the folder (1.4 s for 1000 trial
    files), so a skipped corrupt file is one warning line, not two."""
    import pyarrow.parquet as pq

    import scaling_orchestrator.analysis.data.load

    folder = tmp_path / "results"
    folder.mkdir()
    pq.write_table(points_table(chinchilla_grid(noise=0.002)), folder / "runs.parquet")
    (folder / "cut.parquet").write_bytes(b"PAR1 not a footer")
    reads = []
    read_dir = scaling_orchestrator.analysis.data.load._read_dir
    monkeypatch.setattr(
        scaling_orchestrator.analysis.data.load, "_read_dir", lambda *a: reads.append(a) or read_dir(*a)
    )
    assert _cli([str(folder), "--bootstrap", "0", "--skip-corrupt"]) == 0
    captured = capsys.readouterr()
    assert len(reads) == 1
    [line] = captured.err.splitlines()
    assert line.startswith("scaling fit: warning: ") and "cut.parquet" in line
    assert f"{folder}: {len(chinchilla_grid())} points" in captured.out
