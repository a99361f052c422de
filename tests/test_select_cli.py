"""`scaling select` over a pool of finished runs, `scaling predict` on what it writes, and the
bad requests it refuses in one line.

The pool: a known Chinchilla law (Epoch's constants) with 1% noise, 6 budgets 1e17..1e20
FLOPs x 7 sizes (6ND), as CSV. The selection run costs a few refits, each round scoring the
auto law's forms (about 30 s on 2 cores).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from scaling_orchestrator.analysis.design.law_pick import auto_forms
from scaling_orchestrator.cli.study import main

TRUTH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def write_pool(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for C in np.geomspace(1e17, 1e20, 6):
        n_star = (C / 120) ** 0.5
        for N in n_star * np.geomspace(0.25, 4, 7):
            D = C / (6 * N)
            L = (TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"])
            rows.append((N, D, L * np.exp(0.01 * rng.standard_normal()), f"run{len(rows)}"))
    N, D, L, name = zip(*rows)
    pa_csv.write_csv(pa.table({"n": N, "d": D, "val": L, "name": name}), path)
    return path


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("select")
    pool = write_pool(folder / "pool.csv")
    out = folder / "chosen.json"
    rc = main(["select", str(pool), "--params", "n", "--tokens", "d", "--loss", "val",
               "--budget-fraction", "0.15", "--target-flops", "1e21", "--json", str(out),
               "--bootstrap", "60", "--batch", "6"])
    return rc, pool, out, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.slow  # a selection refits many times
def test_select_writes_a_fit_of_the_chosen_runs(selected):
    rc, _, _, fitted = selected
    assert rc == 0
    assert fitted["parametric"]["fittable"] and fitted["parametric"]["samples"]
    sel = fitted["selection"]
    assert sel["spent_flops"] <= sel["budget_flops"] == pytest.approx(0.15 * sel["pool_flops"])
    # no --stop-at-tolerance: the selection goes on until no run fits in what is left
    assert sel["stop"] in ("budget", "exhausted") and sel["message"]
    assert sel["budget_flops"] - sel["spent_flops"] < max(r["flops"] for r in sel["rows"])
    rows = sel["rows"]
    assert len(rows) == sel["n_chosen"] == fitted["data"]["n_final_points"]
    assert len({r["row"] for r in rows}) == len(rows)
    assert [r["round"] for r in rows[:9]] == [1] * 9
    assert all(r["reason"].startswith(f"round {r['round']}: ") for r in rows)
    assert max(r["round"] for r in rows) >= 2
    [target] = [r for r in fitted["compute_optimal"] if r["method"] == "parametric"]
    assert target["flops"] == 1e21


@pytest.mark.slow  # a selection refits many times
def test_law_auto_is_the_default_and_says_why(selected):
    _, _, _, fitted = selected
    sel = fitted["selection"]
    assert sel["law"] in auto_forms() and fitted["law"]["name"] == sel["law"]
    assert all(r["law"] in auto_forms() for r in sel["rounds"])
    # the seed's 6 runs below its largest budget are too few to score a form on: the default
    said = [r["law_chosen_by"] for r in sel["rounds"]]
    assert said[0].startswith("default: no form could be scored on the largest budgets")
    assert said[-1].startswith("auto: lowest mean |relative error| of loss on the largest budgets")
    assert sel["rounds"][-1]["law"] == sel["law"]


@pytest.mark.slow  # a selection refits many times
def test_stop_at_tolerance_stops_before_the_budget(tmp_path, capsys):
    pool = write_pool(tmp_path / "pool.csv")
    out = tmp_path / "chosen.json"
    rc = main(["select", str(pool), "--params", "n", "--tokens", "d", "--loss", "val",
               "--budget-fraction", "1", "--target-flops", "1e21", "--json", str(out),
               "--bootstrap", "40", "--law", "chinchilla", "--stop-at-tolerance", "--tolerance", "2"])
    assert rc == 0
    fitted = json.loads(out.read_text())
    sel = fitted["selection"]
    # the whole pool may be spent; the interval within x/÷2 at two fits in a row stops it first
    assert sel["stop"] == "tolerance" and sel["spent_flops"] < 0.8 * sel["budget_flops"]
    assert sel["n_chosen"] < sel["pool_runs"] and "<= tolerance^2 4" in sel["message"]
    assert sel["law"] == "chinchilla" and {r["law_chosen_by"] for r in sel["rounds"]} == {"given"}
    assert "chinchilla law" in capsys.readouterr().out


@pytest.mark.slow  # a selection refits many times
def test_predict_reads_the_selection(selected, tmp_path):
    rc, pool, out, _ = selected
    assert rc == 0
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(out), str(pool), "--params", "n", "--tokens", "d",
                 "--out", str(pred)]) == 0
    table = pa_csv.read_csv(pred)
    rel = np.abs(table["predicted_loss"].to_numpy() / table["val"].to_numpy() - 1)
    assert np.median(rel) < 0.02      # 1% noise: the fit of the chosen runs predicts the rest
    assert "predicted_loss_lo" in table.column_names


@pytest.mark.parametrize("flags, words", [
    (["--target-flops", "1e19"], "--target-flops 1e19: must exceed the largest run"),
    (["--budget-fraction", "0.001"], "less than the seed round's"),
    (["--loss", "nope"], "--loss column 'nope' not found"),
    (["--params", "N"], "--params column 'N' not found"),
    (["--cost-exponent", "2"], "--cost-exponent 2: must be in [0, 1]"),
])
def test_bad_requests_exit_2_with_one_line(tmp_path, capsys, flags, words):
    pool = write_pool(tmp_path / "pool.csv")
    args = {"--params": "n", "--tokens": "d", "--loss": "val", "--budget-fraction": "0.1",
            "--target-flops": "1e21", "--json": str(tmp_path / "out.json")}
    args.update(dict(zip(flags[::2], flags[1::2])))
    rc = main(["select", str(pool), *[x for kv in args.items() for x in kv]])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("scaling select: error: ") and words in err
    assert not (tmp_path / "out.json").exists()
