"""Hyperparameter laws: lr*(N) and B*(C) recovered from known bowls, edge and divergence
handling, not-fittable cases, the fit JSON, the report section and load_lr_law."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_report import result_row, results_dir

from scaling_orchestrator.analysis import FitOptions, fit
from scaling_orchestrator.analysis.data.load import load_points
from scaling_orchestrator.analysis.data.schema import rows_to_table
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.hparam_search import NO_ROWS, fit_hparams, load_lr_law, split_kinds
from scaling_orchestrator.cli.analysis import add_fit_parser, add_report_parser

SIZES = (1e6, 3e6, 1e7, 3e7, 1e8)
LR_COEF, LR_EXP = 0.1, -0.33           # lr*(N) = 0.1 N^-0.33: 1.05e-3 at 1e6, 2.29e-4 at 1e8
B_COEF, B_EXP = 2.0, 0.3               # B*(C) = 2 C^0.3 with C = 6 N (20 N)
BOWL_LR, BOWL_B = 0.08, 0.05           # loss rise per (decade off the optimum)^2


def hparam_rows(sizes=SIZES, *, n_lr=7, span_decades=1.2, noise=0.003, seed=0, batches=1,
                lr_shift=None, diverge_above=None):
    """Per size a bowl in log10 lr around LR_COEF N^LR_EXP (and in log10 batch around B*(C) when
    batches > 1); each (size, batch) carries its own jittered lr grid. lr_shift: {size index:
    decades to move that size's grid}; diverge_above: lr / lr* beyond which a trial diverges."""
    rng, rows = np.random.default_rng(seed), []
    for i, n in enumerate(sizes):
        lr_opt, budget = LR_COEF * n ** LR_EXP, 6 * n * 20 * n
        b_opt = B_COEF * budget ** B_EXP
        grid_b = [4096] if batches == 1 else b_opt * np.logspace(-0.9, 0.9, batches)
        for b in grid_b:
            jitter = rng.uniform(-0.1, 0.1) + (lr_shift or {}).get(i, 0.0)
            grid = np.logspace(-span_decades / 2, span_decades / 2, n_lr)
            for lr in lr_opt * grid * 10 ** jitter:
                loss = (3.0 - 0.1 * np.log10(n) + BOWL_LR * np.log10(lr / lr_opt) ** 2
                        + (BOWL_B * np.log10(b / b_opt) ** 2 if batches > 1 else 0.0)
                        + noise * rng.standard_normal())
                bad = diverge_above is not None and lr / lr_opt > diverge_above
                row = result_row(f"h{i}{len(rows):014d}", budget, n, 20 * n,
                           float("nan") if bad else loss, 10, True, "diverged" if bad else "ok")
                row.update(kind="hparam", n_layer=i + 1, d_model=64 * (i + 1), lr=float(lr),
                           batch_tokens=int(b))
                rows.append(row)
    return rows


@pytest.fixture(scope="module")
def lr_fit():
    return fit_hparams(rows_to_table(hparam_rows()), n_bootstrap=300, seed=0)


def test_lr_law_recovers_known_exponent(lr_fit):
    law = lr_fit.lr
    assert law.fittable and len(law.used) == 5
    assert law.exponent == pytest.approx(LR_EXP, abs=0.05)          # measured -0.340
    lo, hi = law.ci95["exponent"]
    assert lo < LR_EXP < hi and hi - lo < 0.2                        # measured [-0.380, -0.282]
    assert lr_fit.lr_at(1e7) == pytest.approx(LR_COEF * 1e7 ** LR_EXP, rel=0.1)
    for o in law.optima:                                             # measured within 4%
        assert o.value_opt == pytest.approx(LR_COEF * o.params ** LR_EXP, rel=0.12)
        assert o.ci95[0] < o.value_opt < o.ci95[1] and not o.edge and o.window == 5
    assert lr_fit.batch.fittable is False
    assert lr_fit.batch.reason == "batch_tokens was not searched (one value per size)"
    with pytest.raises(NotFittable, match="batch_tokens was not searched"):
        lr_fit.batch_tokens_at(1e15)


def test_lr_law_json_shape(lr_fit):
    d = lr_fit.to_dict()["lr_law"]
    assert {"coefficient", "exponent", "ci95", "sizes", "n_range", "band"} <= set(d)
    assert set(d["ci95"]) == {"coefficient", "exponent"}
    assert d["n_range"] == [1e6, 1e8]
    assert all({"params", "lr_opt", "lr_ci95", "loss_opt", "edge", "n_trials"} <= set(s)
               for s in d["sizes"])
    assert [s["n_trials"] for s in d["sizes"]] == [7] * 5
    band = {round(b["params"]): b for b in d["band"]}
    assert band[10 ** 6]["lr"] == pytest.approx(d["coefficient"] * 1e6 ** d["exponent"])
    assert band[10 ** 6]["ci95"][0] < band[10 ** 6]["lr"] < band[10 ** 6]["ci95"][1]


def test_edge_size_is_flagged_and_left_out():
    # the smallest size's grid moved 1.5 decades down: its best tried lr is its largest
    fit = fit_hparams(rows_to_table(hparam_rows(lr_shift={0: -1.5})), n_bootstrap=0)
    first = fit.lr.optima[0]
    assert first.fittable and first.edge and first not in fit.lr.used
    assert [o.edge for o in fit.lr.optima[1:]] == [False] * 4
    assert fit.lr.exponent == pytest.approx(LR_EXP, abs=0.05)
    assert fit.lr.x_range == (3e6, 1e8)


def test_diverged_trials_are_counted_and_bound_the_grid():
    # lrs above 2.5x the optimum diverge: the top one or two of every grid (loss +inf)
    fit = fit_hparams(rows_to_table(hparam_rows(diverge_above=2.5)), n_bootstrap=0)
    n_div = sum(o.n_diverged for o in fit.lr.optima)
    assert n_div >= 5 and fit.lr.excluded == {"diverged": n_div}
    assert all(o.n_trials == 7 and not o.edge for o in fit.lr.optima)
    assert fit.lr.exponent == pytest.approx(LR_EXP, abs=0.05)
    d = fit.to_dict()["lr_law"]["sizes"][0]
    assert None in json.loads(json.dumps(_plain(d["observed"]["loss"])))   # inf -> null


def _plain(values):
    return [v if np.isfinite(v) else None for v in values]


def test_not_fittable_cases():
    empty = fit_hparams(rows_to_table([result_row("s1", 1e16, 1e6, 1e9, 3.0, 1, True)]))
    assert empty.to_dict() == {"lr_law": {"fittable": False, "reason": NO_ROWS},
                               "batch_law": {"fittable": False, "reason": NO_ROWS}}
    with pytest.raises(NotFittable, match="no hparam rows"):
        empty.lr_at(1e6)
    one = fit_hparams(rows_to_table(hparam_rows(sizes=(1e7,))), n_bootstrap=0).lr
    assert not one.fittable and one.reason.startswith("1 size(s) with an interior lr optimum")
    assert "needs 2" in one.reason and len(one.to_dict()["sizes"]) == 1
    failed = [dict(r, status="failed") for r in hparam_rows(sizes=(1e7,))]
    dead = fit_hparams(rows_to_table(failed), n_bootstrap=0).to_dict()["lr_law"]
    assert dead == {"fittable": False, "reason": "none of the 7 hparam trials is usable",
                    "excluded": {"failed": 7}}
    two_lrs = fit_hparams(rows_to_table(hparam_rows(n_lr=2)), n_bootstrap=0).lr
    assert not two_lrs.fittable
    assert two_lrs.optima[0].reason == ("lr: 2 distinct value(s) with a finite loss; a parabola "
                                        "needs 3")


def test_batch_law_recovers_known_exponent():
    fit = fit_hparams(rows_to_table(hparam_rows(batches=5)), n_bootstrap=100, seed=0)
    assert fit.batch.fittable and len(fit.batch.used) == 5
    assert fit.batch.exponent == pytest.approx(B_EXP, abs=0.05)      # measured 0.304
    lo, hi = fit.batch.ci95["exponent"]
    assert lo < B_EXP < hi                                           # measured [0.286, 0.318]
    assert fit.lr.exponent == pytest.approx(LR_EXP, abs=0.05)        # read at each best batch
    c = 6 * 1e7 * 20 * 1e7
    assert fit.batch_tokens_at(c) == pytest.approx(B_COEF * c ** B_EXP, rel=0.15)


def mixed_dir(tmp_path):
    """The report test's scaling grid plus the hparam rows, in one results folder."""
    folder = results_dir(tmp_path)
    pq.write_table(rows_to_table(hparam_rows()), folder / "part-1.parquet")
    return folder


def _run(add, argv):
    parser = argparse.ArgumentParser(prog="scaling")
    add(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.slow  # seconds of fitting
def test_fit_json_has_lr_law_and_scaling_ignores_hparam_rows(tmp_path, capsys):
    folder = mixed_dir(tmp_path)
    out = tmp_path / "fit.json"
    assert _run(add_fit_parser, ["fit", str(folder), "--bootstrap", "0", "--json", str(out)]) == 0
    assert "lr*(N) = " in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["data"]["n_final_points"] == 35 and result["data"]["n_hparam_trials"] == 35
    assert result["lr_law"]["exponent"] == pytest.approx(LR_EXP, abs=0.05)
    assert result["batch_law"]["fittable"] is False
    law = load_lr_law(out)
    assert law(1e7) == pytest.approx(result["lr_law"]["coefficient"] * 1e7 ** law.exponent)
    assert law.n_range == (1e6, 1e8)
    assert law(np.array([1e6, 1e8])).shape == (2,)
    # load_points alone reads every row; the fit keeps the hparam runs out of the scaling laws
    assert len(load_points(str(folder)).loss) == 70
    typed = fit(str(folder), options=FitOptions(n_bootstrap=0))
    assert typed.data.n_final_points == 35 and not any(r.startswith("h") for r in typed.points.run)
    assert typed.parametric.law.n_points == 35 and typed.lr_law.fittable
    scaling, hparam = split_kinds(pq.read_table(folder / "part-1.parquet"))
    assert scaling.num_rows == 0 and hparam.num_rows == 35


def test_fit_without_hparam_rows_says_so():
    # three points: every scaling method says why it cannot run, and so do the hparam laws
    rows = [result_row(f"s{i}", c, n, c / (6 * n), loss, 1, True)
            for i, (n, c, loss) in enumerate(((1e7, 6e16, 3.0), (2e7, 1.2e17, 2.9),
                                              (4e7, 2.4e17, 2.8)))]
    result = fit(rows_to_table(rows), options=FitOptions(n_bootstrap=0))
    assert result.lr_law.reason == result.batch_law.reason == NO_ROWS
    out = result.to_dict()
    assert out["lr_law"] == {"fittable": False, "reason": "no hparam rows"}
    assert out["batch_law"] == {"fittable": False, "reason": "no hparam rows"}
    assert out["data"]["n_hparam_trials"] == 0
    assert not result.parametric.fittable and "needs at least 5" in result.parametric.reason
    with pytest.raises(ValueError, match="parametric: not fittable"):
        result.predict(1e8, 1e10)


def test_sizes_are_grouped_by_size_label():
    # The planner's names ("d1".."d5") label the sizes; a table without them falls back to
    # L<n_layer>xD<d_model>, and the `group` column (the back-test's) is never read as a size.
    labelled = [dict(r, size_label=f"d{r['n_layer']}", group="held_out") for r in hparam_rows()]
    fit_labelled = fit_hparams(rows_to_table(labelled), n_bootstrap=0).lr
    assert [o.label for o in fit_labelled.optima] == ["d1", "d2", "d3", "d4", "d5"]
    plain = fit_hparams(rows_to_table(hparam_rows()), n_bootstrap=0).lr
    assert [o.label for o in plain.optima] == ["L1xD64", "L2xD128", "L3xD192", "L4xD256",
                                               "L5xD320"]
    assert fit_labelled.exponent == plain.exponent


def test_hparam_only_source_reports_lr_law(tmp_path, capsys):
    folder = tmp_path / "hp"
    folder.mkdir()
    pq.write_table(rows_to_table(hparam_rows(batches=5)), folder / "part-0.parquet")
    out = tmp_path / "report"
    assert _run(add_report_parser, ["report", str(folder), "--out", str(out),
                                    "--bootstrap", "50"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"lr_law.png", "batch_law.png", "report.md", "report.html"} <= names
    assert "isoflop.png" not in names
    md = (out / "report.md").read_text()
    assert "## Learning-rate law lr*(N) = c N^p" in md and "## Batch-size law" in md
    fit = json.loads((out / "fit.json").read_text())
    assert fit["isoflop"]["fittable"] is False and "no scaling rows" in fit["isoflop"]["reason"]
    assert fit["batch_law"]["exponent"] == pytest.approx(B_EXP, abs=0.05)
    assert load_lr_law(out / "fit.json").exponent == fit["lr_law"]["exponent"]


def test_load_lr_law_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_lr_law(tmp_path / "absent.json")
    unfit = tmp_path / "unfit.json"
    unfit.write_text(json.dumps({"lr_law": {"fittable": False, "reason": NO_ROWS}}))
    with pytest.raises(NotFittable, match="lr_law not fittable: no hparam rows"):
        load_lr_law(unfit)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"isoflop": {}}))
    with pytest.raises(ValueError, match="no 'lr_law' section"):
        load_lr_law(bare)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fittable": True, "coefficient": -1, "exponent": -0.3,
                               "n_range": [1e6, 1e8]}))
    with pytest.raises(ValueError, match=r"lr_law.coefficient = -1; allowed: a finite number > 0"):
        load_lr_law(bad)


def test_trials_stopped_early_are_excluded_and_counted():
    # ASHA-style: the worst lrs of each size end at a quarter of the tokens; their (higher)
    # losses must not enter the per-size parabolas, and the law is unchanged by them.
    import pyarrow as pa

    from scaling_orchestrator.analysis.methods.hparam_search import hparam_sizes

    rows = []
    for n in (1e6, 4e6, 1.6e7):
        best = 0.1 * n ** -0.33
        for i, lr in enumerate(best * 2.0 ** np.arange(-3, 4)):
            short = i in (0, 6)
            rows.append({"kind": "hparam", "trial_id": f"{n:g}-{i}", "final": True, "status": "ok",
                         "params": n, "lr": lr, "tokens": 250 if short else 1000,
                         "val_loss": 3.0 + 0.1 * np.log10(lr / best) ** 2 + (1.0 if short else 0.0)})
    sizes, excluded, n = hparam_sizes(pa.Table.from_pylist(rows))
    assert n == 21 and excluded == {"stopped early": 6}
    assert [len(s.lr) for s in sizes] == [5, 5, 5]
