"""A law that cannot predict is never the answer, and no NaN reaches a writer.

`--law auto` refits its pick on every run; a refit that does not converge or ends with a
constant not finite hands the choice to the next form (said in law.chosen_by, law.rejected and
the warnings). An explicit --law whose fit cannot predict is parametric.fittable false with
the reason, one line on stderr, and the headline does not use it. predict refuses such a law in
one line. Every JSON writer writes NaN and inf as null (strict JSON)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from scaling_orchestrator.analysis import FitOptions, FitResult, fit
from scaling_orchestrator.analysis.fit_json import parametric_from_dict
from scaling_orchestrator.analysis.judge.headline import degenerate
from scaling_orchestrator.analysis.laws import choice
from scaling_orchestrator.analysis.laws.forms.base import FittedLaw
from scaling_orchestrator.analysis.laws.registry import ParametricResult, forms, law_form
from scaling_orchestrator.analysis.numerics import json_text, write_json
from scaling_orchestrator.cli.analysis import add_fit_parser, add_predict_parser

CHINCHILLA = dict(E=1.8, A=480.0, B=2100.0, alpha=0.34, beta=0.37)


def chinchilla_table(budgets=np.geomspace(1e17, 1e20, 5), sizes=9, noise=0.01, seed=0) -> pa.Table:
    """An IsoFLOP grid on a Chinchilla-shaped law with 1% log-normal noise."""
    rng, rows = np.random.default_rng(seed), []
    for C in budgets:
        for N in np.geomspace(C ** 0.5 / 60, C ** 0.5 / 3, sizes):
            D = C / (6 * N)
            c = CHINCHILLA
            L = c["E"] + c["A"] / N ** c["alpha"] + c["B"] / D ** c["beta"]
            rows.append((N, D, 6 * N * D, C, L * np.exp(rng.normal(0, noise)), f"r{len(rows)}"))
    N, D, F, C, L, run = zip(*rows)
    return pa.table({"params": N, "tokens": D, "flops": F, "budget_flops": C, "val_loss": L,
                     "trial_id": run})


def farseer_table(budgets=np.geomspace(1e17, 1e21, 9), sizes=30, noise=0.01, seed=0) -> pa.Table:
    """A Farseer-shaped law (the floor falls with N, beta moves with N) with 1% noise: the
    shape of the table on which auto once chose farseer and its refit ended with b = NaN."""
    rng, rows = np.random.default_rng(seed), []
    for C in budgets:
        for N in np.geomspace(C ** 0.5 / 60, C ** 0.5 / 3, sizes):
            D = C / (6 * N)
            floor = np.exp(-0.05 * N ** 0.1 + 0.8)
            beta = np.exp(0.2 * N ** -0.05 - 1.3)
            L = floor + np.exp(0.5 * N ** 0.05 + 5.0) * D ** -beta
            rows.append((N, D, 6 * N * D, C, L * np.exp(rng.normal(0, noise)), f"r{len(rows)}"))
    N, D, F, C, L, run = zip(*rows)
    return pa.table({"params": N, "tokens": D, "flops": F, "budget_flops": C, "val_loss": L,
                     "trial_id": run})


def broken(law):
    """The law with its first constant NaN: what a refit that ran off to a boundary leaves."""
    if "values" in {f.name for f in fields(law)}:
        first = next(iter(law.values))
        return replace(law, values={**law.values, first: float("nan")}, converged=False)
    return replace(law, alpha=float("nan"), converged=False)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="scaling")
    sub = parser.add_subparsers()
    add_fit_parser(sub)
    add_predict_parser(sub)
    args = parser.parse_args(argv)
    args.command = argv[0]
    return args.func(args)


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def two_forms():
    """Auto over Chinchilla and Kaplan only (Farseer's fit takes seconds on every call)."""
    with pytest.MonkeyPatch.context() as mp:
        two = {k: forms()[k] for k in ("chinchilla", "kaplan")}
        mp.setattr(choice, "forms", lambda: two)
        yield mp


def test_auto_passes_over_a_form_whose_refit_cannot_predict(two_forms, monkeypatch):
    refit, tried = choice.refit_from, []

    def fails_for_the_pick(form, start_law, *args, **kwargs):
        tried.append(form.name)
        law = refit(form, start_law, *args, **kwargs)
        return broken(law) if len(tried) == 1 else law   # the best-scored form's refit fails

    monkeypatch.setattr(choice, "refit_from", fails_for_the_pick)
    result = fit(chinchilla_table(), options=FitOptions(law="auto", n_bootstrap=0, target_flops=(1e21,)))
    plain = result.to_dict()
    assert len(tried) == 2 and set(tried) == {"chinchilla", "kaplan"}
    assert plain["law"]["name"] == tried[1] and plain["parametric"]["law"] == tried[1]
    scores = {c["name"]: c["held_out_rel_error"] for c in plain["law"]["candidates"]}
    assert scores[tried[0]] <= scores[tried[1]]
    assert tried[0] in plain["law"]["rejected"][0] and "not finite" in plain["law"]["rejected"][0]
    assert "next best" in plain["law"]["chosen_by"]
    assert any(tried[0] in w and "passed over" in w for w in plain["warnings"])
    assert np.isfinite(result.predict(1e9, 2e10))
    assert FitResult.from_dict(_strict(json_text(plain))).law.rejected == result.law.rejected


def test_auto_with_no_form_that_can_predict_is_unfittable_not_nan(two_forms, monkeypatch):
    refit = choice.refit_from
    monkeypatch.setattr(choice, "refit_from", lambda *a, **k: broken(refit(*a, **k)))
    result = fit(chinchilla_table(), options=FitOptions(law="auto", n_bootstrap=0, target_flops=(1e21,)))
    plain = result.to_dict()
    assert plain["parametric"]["fittable"] is False and "can predict" in plain["parametric"]["reason"]
    assert len(plain["law"]["rejected"]) == 2
    assert all(h["method"] != "parametric" for h in plain["headline"])
    with pytest.raises(ValueError, match="not fittable"):
        result.predict(1e9, 2e10, method="parametric")
    # The headline's own law still predicts, and says it is not the parametric one.
    assert np.isfinite(result.predict(1e9, 2e10)) and "loss frontier" in result.prediction_law()


def test_the_refit_starts_from_the_held_out_optimum_too(two_forms):
    """From the held-out fit's optimum alone the refit reaches the grid's optimum."""
    table = chinchilla_table()
    N, D, L = (np.asarray(table.column(c), float) for c in ("params", "tokens", "val_loss"))
    form = law_form("chinchilla")
    held = form.fit(N[:-9], D[:-9], L[:-9])
    near = choice.fit_near(form, held, N, D, L)
    grid = form.fit(N, D, L)
    assert near.converged and not choice.cannot_predict(form, near)
    assert near.objective == pytest.approx(grid.objective, rel=1e-6)


def test_an_explicit_law_that_cannot_predict_is_unfittable_and_said_once(monkeypatch, tmp_path, capsys):
    form = law_form("kaplan")
    fitted = form.fit
    monkeypatch.setattr(type(form), "fit", lambda self, *a, **k: broken(fitted(*a, **k)))
    source = tmp_path / "runs.csv"
    pa_csv.write_csv(chinchilla_table(), source)
    out = tmp_path / "fit.json"
    assert _cli(["fit", str(source), "--law", "kaplan", "--bootstrap", "0", "--json", str(out)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--law kaplan" in err and "cannot predict" in err
    plain = _strict(out.read_text())
    assert plain["parametric"] == {"fittable": False, "reason": plain["parametric"]["reason"]}
    assert "not finite" in plain["parametric"]["reason"]
    assert all(h["method"] != "parametric" for h in plain["headline"])


def test_predict_refuses_a_saved_law_with_a_null_constant(tmp_path, capsys):
    """A fit.json written before the refit was checked (farseer, b null, fittable true): the
    law cannot predict, and predict says so in one line instead of writing NaN."""
    result = fit(chinchilla_table(), options=FitOptions(n_bootstrap=0, target_flops=(1e21,)))
    plain = result.to_dict()
    plain["parametric"]["alpha"] = None
    plain["parametric"]["converged"] = False
    saved = tmp_path / "fit.json"
    saved.write_text(json.dumps(plain))
    with pytest.raises(ValueError, match="alpha = nan"):
        FitResult.from_dict(plain).predict(1e9, 2e10, method="parametric")
    points = tmp_path / "points.csv"
    pa_csv.write_csv(pa.table({"params": [1e9], "tokens": [2e10]}), points)
    out = tmp_path / "pred.csv"
    assert _cli(["predict", str(saved), str(points), "--out", str(out), "--method", "parametric"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot predict" in err and "\n" not in err and not out.exists()


def test_predict_says_why_a_row_has_no_prediction(tmp_path, capsys):
    result = fit(chinchilla_table(), options=FitOptions(n_bootstrap=0, target_flops=(1e21,)))
    saved = write_json(tmp_path / "fit.json", result.to_dict())
    points = tmp_path / "points.csv"
    pa_csv.write_csv(pa.table({"params": [1e9, -1.0], "tokens": [2e10, 2e10]}), points)
    out = tmp_path / "pred.csv"
    assert _cli(["predict", str(saved), str(points), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "1 left empty" in line and "not > 0" in line
    written = pa_csv.read_csv(out).column("predicted_loss").to_pylist()
    assert math.isfinite(written[0]) and written[1] is None


def test_a_saved_farseer_law_keeps_its_constants_a_and_b():
    """Farseer names two constants a and b: the allocation exponents (which it has not) once
    overwrote them with null, and every prediction from its fit.json was NaN."""
    form = law_form("farseer")
    values = dict(s=-0.05, q=0.1, S=0.8, B=0.5, b=0.05, Q=5.0, A=0.2, a=-0.05, E=-1.3)
    par = ParametricResult(FittedLaw(form, values, 1e-3, 270, True), form)
    plain = _strict(json_text(par.to_dict()))
    assert plain["a"] == -0.05 and plain["b"] == 0.05
    back = parametric_from_dict(plain)
    N, D = np.array([1e8, 3e9]), np.array([2e9, 6e10])
    np.testing.assert_allclose(back.law.predict(N, D), par.law.predict(N, D), rtol=1e-12)
    assert not degenerate({"parametric": plain})


# ---- no NaN reaches a writer ---------------------------------------------------------------

PLANTS = (float("nan"), float("inf"), float("-inf"))


def plant(value, counter=None):
    """Every float of a plain structure replaced by NaN, inf or -inf in turn (ints, bools and
    strings kept: counts and names are not what a degenerate fit makes non-finite)."""
    counter = [0] if counter is None else counter
    if isinstance(value, dict):
        return {k: plant(v, counter) for k, v in value.items()}
    if isinstance(value, list):
        return [plant(v, counter) for v in value]
    if isinstance(value, float):
        counter[0] += 1
        return PLANTS[counter[0] % 3]
    return value


@pytest.fixture(scope="module")
def base():
    return fit(chinchilla_table(), options=FitOptions(n_bootstrap=12, target_flops=(1e21,))).to_dict()


def parametric_of(name: str) -> dict:
    """A fitted parametric section of the form, every number planted."""
    form = law_form(name)
    section = {"fittable": True, "law": name, **{k: 1.0 for k in form.constants}, "a": 0.5, "b": 0.5,
               "ci95": {k: [0.5, 1.5] for k in form.constants}, "objective": 1e-3, "n_points": 40,
               "converged": True, "samples": [[1.0] * len(form.constants)] * 3}
    return plant(section)


@pytest.mark.parametrize("name", list(forms()))
def test_a_fit_of_every_form_with_nan_and_inf_everywhere_writes_strict_json(base, name, tmp_path):
    plain = plant({**base, "parametric": parametric_of(name)})
    result = FitResult.from_dict(plain)
    again = result.to_dict()
    assert again["parametric"]["law"] == name
    text = json_text(again)
    _strict(text)
    path = write_json(tmp_path / "out" / "fit.json", {**again, "selection": {"spent": float("nan")}})
    assert _strict(path.read_text())["selection"]["spent"] is None
    with pytest.raises(ValueError, match="cannot predict"):
        result.predict(1e9, 2e10)


def test_the_writer_keeps_what_json_has_no_type_for(tmp_path):
    path = write_json(tmp_path / "x.json", {"path": tmp_path, "v": np.float32("nan"), "a": np.arange(2.0),
                                            "s": {1.5}, "z": np.array(np.inf)})
    assert _strict(path.read_text()) == {"path": str(tmp_path), "v": None, "a": [0.0, 1.0], "s": [1.5],
                                         "z": None}


# ---- the two tables of the report, end to end ----------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("table", [farseer_table, chinchilla_table], ids=["farseer", "chinchilla"])
def test_auto_on_a_noisy_table_predicts_or_refuses_in_one_line(table, tmp_path, capsys):
    source = tmp_path / "runs.csv"
    pa_csv.write_csv(table(), source)
    saved = tmp_path / "fit.json"
    assert _cli(["fit", str(source), "--law", "auto", "--bootstrap", "20", "--json", str(saved)]) == 0
    plain = _strict(saved.read_text())
    points = tmp_path / "points.csv"
    pa_csv.write_csv(pa.table({"params": [3e9, 1e10], "tokens": [6e10, 2e11]}), points)
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    code = _cli(["predict", str(saved), str(points), "--out", str(out)])
    if plain["parametric"]["fittable"]:
        assert plain["parametric"]["converged"] or plain["law"]["rejected"]
        assert code == 0
        assert all(math.isfinite(x) for x in pa_csv.read_csv(out).column("predicted_loss").to_pylist())
    else:
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "cannot predict" in err
