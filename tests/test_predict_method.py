"""predict says which law it uses and offers the headline's: `FitResult.predict(method=...)` and
`scaling predict --method`. A headline from IsoFLOP predicts with IsoFLOP's loss frontier, so
predict at the headline's N*, D* gives the headline's expected loss; the parametric law is one
argument away; a method without a frontier is refused by name and passed over by "headline"."""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from test_fit_api import curve_rows

from scaling_orchestrator.analysis import FitOptions, FitResult, fit
from scaling_orchestrator.analysis.data.schema import rows_to_table
from scaling_orchestrator.analysis.errors import Unfit
from scaling_orchestrator.analysis.predict import predict_table, predicted_by
from scaling_orchestrator.cli.analysis import add_predict_parser


@pytest.fixture(scope="module")
def fitted():
    return fit(rows_to_table(curve_rows()), options=FitOptions(n_bootstrap=20, seed=1))


def headed_by(result: FitResult, method: str) -> FitResult:
    """The result read back from its fit.json with the headline answered by `method`."""
    plain = copy.deepcopy(result.to_dict())
    for row, rec in zip(plain["headline"], result.compute_optimal(result.target_flops, method)):
        row.update(method=method, params=rec.params, tokens=rec.tokens, loss=rec.loss)
    return FitResult.from_dict(json.loads(json.dumps(plain)))


def test_an_isoflop_headline_predicts_its_own_expected_loss(fitted):
    iso = headed_by(fitted, "isoflop")
    head = iso.headline[-1]
    got = iso.predict(head.params, head.tokens, C=head.flops)
    assert got == pytest.approx(head.loss, rel=1e-12)
    assert "isoflop loss frontier" in iso.prediction_law() and "the headline's method" in iso.prediction_law()
    loss, lo, hi = iso.predict([head.params], [head.tokens], interval=True)
    assert lo is None and hi is None and np.isfinite(loss).all()
    # The parametric law at the same point is another number, and says it is the parametric law.
    par = iso.predict(head.params, head.tokens, method="parametric")
    assert par != pytest.approx(got, rel=1e-6)
    assert iso.prediction_law("parametric").startswith("the parametric chinchilla law")


def test_a_parametric_headline_and_the_default_agree(fitted):
    par = headed_by(fitted, "parametric")
    N, D = np.array([3e7, 1e8]), np.array([1e9, 4e9])
    by_name = par.predict(N, D, interval=True, method="parametric")
    for got, want in zip(par.predict(N, D, interval=True), by_name):
        np.testing.assert_array_equal(got, want)
    assert par.prediction_law() == "the parametric chinchilla law L(N, D) (the headline's method)"


def test_a_method_without_a_frontier_is_refused_by_name_and_passed_over(fitted):
    iso = headed_by(fitted, "isoflop")
    bare = replace(iso, envelope=Unfit("no training curves"), loss_frontiers={"isoflop": None})
    with pytest.raises(ValueError, match=r"envelope: no loss frontier to predict with \(no training"):
        bare.predict(1e8, 2e9, method="envelope")
    assert bare.predict(1e8, 2e9) == pytest.approx(bare.predict(1e8, 2e9, method="parametric"), rel=1e-15)
    assert "the headline's isoflop has no loss frontier" in bare.prediction_law()
    with pytest.raises(ValueError, match="method='kaplan': allowed headline, parametric, isoflop, envelope"):
        bare.predict(1e8, 2e9, method="kaplan")


def test_scaling_predict_names_the_law_it_used(fitted, tmp_path, capsys):
    iso = headed_by(fitted, "isoflop")
    saved = tmp_path / "fit.json"
    saved.write_text(json.dumps(iso.to_dict()))
    head = iso.headline[0]
    points = tmp_path / "points.csv"
    table = pa.table({"params": [head.params], "tokens": [head.tokens], "flops": [head.flops]})
    pa_csv.write_csv(table, points)
    parser = argparse.ArgumentParser(prog="scaling")
    add_predict_parser(parser.add_subparsers())
    for method, needle in (("headline", "isoflop loss frontier"), ("parametric", "parametric chinchilla")):
        out = tmp_path / f"{method}.csv"
        args = parser.parse_args(["predict", str(saved), str(points), "--out", str(out), "--method", method])
        assert args.func(args) == 0
        line = capsys.readouterr().out
        assert needle in line and line.count("\n") == 1
        assert predicted_by(predict_table(iso, points, method=method)) in line
    written = pa_csv.read_csv(tmp_path / "headline.csv").column("predicted_loss").to_pylist()
    assert written == pytest.approx([head.loss], rel=1e-12)
    assert "predicted_loss_lo" in pa_csv.read_csv(tmp_path / "parametric.csv").column_names
