"""Schedule-aware curve laws: schedules, areas, known-constant recovery, unseen schedules, CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from scipy.signal import lfilter  # the reference for momentum_sums (the package skips its import cost)

import scaling_orchestrator.analysis.laws.curves.fit as curve_fit_module
from scaling_orchestrator.analysis.laws.curves.fit import CurveFit, CurveSet, fit_curves, held_out
from scaling_orchestrator.analysis.laws.curves.forms import curve_form
from scaling_orchestrator.analysis.laws.curves.schedule import (
    MOMENTUM,
    areas,
    logged_lr,
    momentum_sums,
    recipe_lr,
)
from scaling_orchestrator.cli.study import main
from scaling_orchestrator.models.training.config import TrainConfig, lr_at

TISSUE = {"L0": 2.0, "A": 1.1, "alpha": 0.5, "C": 0.4}
LUO = {"L0": 2.0, "A": 1.2, "alpha": 0.45, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.5}


def test_momentum_sums_are_lfilter_bit_for_bit():
    delta = np.concatenate([[0.0], -np.diff(recipe_lr(3000, 3e-3, "wsd"))])
    delta[500:900] += np.random.default_rng(0).normal(0, 1e-5, 400)
    np.testing.assert_array_equal(momentum_sums(delta), lfilter([1.0], [1.0, -MOMENTUM], delta))


@pytest.mark.parametrize("schedule,shape", [("cosine", "linear"), ("wsd", "linear"), ("wsd", "1-sqrt"),
                                            ("constant", "linear")])
def test_recipe_lr_is_the_training_loops_schedule_step_by_step(schedule, shape):
    config = TrainConfig(total_tokens=1000 * 64, batch_tokens=64, lr=3e-3, schedule=schedule,
                         decay_shape=shape)
    eta = recipe_lr(1000, 3e-3, schedule, decay_shape=shape)
    np.testing.assert_allclose(eta, [lr_at(s, config) for s in range(1000)], rtol=1e-12)


def test_logged_lr_integrates_by_trapezoid_from_zero_at_step_zero():
    eta = logged_lr([10, 20], [1e-3, 1e-3])
    assert np.cumsum(eta)[9] == pytest.approx(5e-3)      # the warmup before the first logged step
    assert np.cumsum(eta)[19] == pytest.approx(15e-3)
    a = areas(recipe_lr(100, 1.0, "constant", warmup_steps=0), [50, 100])
    np.testing.assert_allclose(a.s1, [50, 100])
    assert not a.s2.any() and not a.drop.any()          # a constant LR never anneals


def truth_curves(law: dict, name: str, runs) -> CurveSet:
    """Noise-free curves of `runs` (name, steps, schedule) drawn from the law with constants `law`."""
    specs = [(run, 1.0, recipe_lr(T, 1e-3, sched), np.arange(T // 20, T + 1, T // 20), None)
             for run, T, sched in runs]
    curves = CurveSet.from_runs(specs)
    loss = CurveFit(curve_form(name), law, 0.0, 0, 0).predict(curves)
    return CurveSet(curves.run, curves.params, curves.step, loss, curves.areas)


def test_lr_annealing_recovers_its_constants_and_predicts_an_unseen_schedule():
    seen = truth_curves(TISSUE, "lr_annealing", [("constant", 2000, "constant"), ("cosine", 2000, "cosine")])
    fitted = fit_curves(seen, "lr_annealing")
    for k, v in TISSUE.items():
        assert fitted.values[k] == pytest.approx(v, rel=0.01), k
    unseen = truth_curves(TISSUE, "lr_annealing", [("wsd", 2000, "wsd"), ("long", 4000, "cosine")])
    assert np.abs(fitted.predict(unseen) / unseen.loss - 1).max() < 0.005


def with_transient(curves: CurveSet) -> CurveSet:
    """curves with a real run's early transient: +30% at step 0, fading over ~60 steps."""
    return CurveSet(curves.run, curves.params, curves.step,
                    curves.loss * (1 + 0.3 * np.exp(-curves.step / 60)), curves.areas)


def test_burn_in_leaves_out_the_early_transient_and_recovers_the_law():
    seen = with_transient(truth_curves(TISSUE, "lr_annealing",
                                       [("constant", 2000, "constant"), ("cosine", 2000, "cosine")]))
    assert seen.burned(0.2).step.min() == 400 and len(seen.burned(0.2).step) == 2 * 17
    fitted = fit_curves(seen, "lr_annealing", burn_in=0.2)
    for k, v in TISSUE.items():          # through the transient (burn_in 0): L0 2.13, alpha 0.56
        assert fitted.values[k] == pytest.approx(v, rel=0.01), k
    unseen = truth_curves(TISSUE, "lr_annealing", [("wsd", 2000, "wsd"), ("long", 4000, "cosine")])
    final = unseen.step == unseen.last_steps()
    assert np.abs(fitted.predict(unseen)[final] / unseen.loss[final] - 1).max() < 0.001


def test_auto_holds_out_a_schedule_where_two_runs_anneal_else_run_tails():
    runs = [("constant", 2000, "constant"), ("cosine", 2000, "cosine"), ("wsd", 1000, "wsd")]
    curves = truth_curves(TISSUE, "lr_annealing", runs)
    train = CurveSet(np.where(curves.run == "cosine", "cosine train", curves.run), curves.params,
                     curves.step, curves.loss, curves.areas)  # the same schedule under another run id
    held, fitted_on, what = held_out(CurveSet.concat([curves, train]))
    assert set(np.concatenate([curves.run, train.run])[held]) == {"cosine", "cosine train"}
    assert not (held & fitted_on).any() and "held-out schedule" in what
    assert not np.isin(np.concatenate([curves.run, train.run])[fitted_on], ["cosine", "cosine train"]).any()
    two = curves.select(curves.run != "wsd")
    held, fitted_on, what = held_out(two)
    assert "run tails" in what and np.array_equal(held, two.step > 1500) and np.array_equal(fitted_on, ~held)


@pytest.mark.slow  # eight fits: about 4 s
def test_auto_picks_the_law_and_a_burn_in_by_held_out_tails_and_says_which():
    seen = with_transient(truth_curves(TISSUE, "lr_annealing",
                                       [("constant", 2000, "constant"), ("cosine", 2000, "cosine")]))
    fitted = fit_curves(seen, "auto")
    assert fitted.form.name == "lr_annealing" and fitted.values["alpha"] == pytest.approx(0.5, rel=0.01)
    assert fitted.chosen.startswith("auto chose lr_annealing, burn-in 30%")
    assert "held-out run tails" in fitted.chosen and "multi_power" in fitted.chosen


def test_joint_law_recovers_the_floors_dependence_on_model_size():
    runs = []
    for n in (1e6, 4e6, 1.6e7):
        floor = 1.8 + 300.0 * n ** -0.4
        law = {"L0": floor, **{k: v for k, v in TISSUE.items() if k != "L0"}}
        part = truth_curves(law, "lr_annealing", [(f"{n:g}c", 1000, "constant"), (f"{n:g}w", 1000, "wsd")])
        runs.append(CurveSet(part.run, np.full(len(part.run), n), part.step, part.loss, part.areas))
    fitted = fit_curves(CurveSet.concat(runs), "lr_annealing")
    assert fitted.form.joint
    assert fitted.values["E"] == pytest.approx(1.8, rel=0.01)
    assert fitted.values["alpha_N"] == pytest.approx(0.4, rel=0.02)


@pytest.mark.slow  # a multi_power fit: about 5 s
def test_multi_power_fitted_on_three_schedules_predicts_a_two_times_longer_run():
    seen = truth_curves(LUO, "multi_power",
                        [("c", 2000, "constant"), ("cos", 2000, "cosine"), ("w", 2000, "wsd")])
    fitted = fit_curves(seen, "multi_power")
    unseen = truth_curves(LUO, "multi_power", [("long", 4000, "cosine"), ("w2", 4000, "wsd")])
    final = unseen.step == 4000
    assert np.abs(fitted.predict(unseen)[final] / unseen.loss[final] - 1).max() < 0.005


def test_cli_fits_foreign_curves_and_predicts_an_unseen_schedule(tmp_path, capsys):
    def write(path, runs, loss=True):
        c = truth_curves(TISSUE, "lr_annealing", runs)
        eta = {r: recipe_lr(T, 1e-3, s) for r, T, s in runs}
        lrs = [eta[r][s - 1] for r, s in zip(c.run, c.step)]
        cols = {"name": c.run.astype(str), "it": c.step, "learning_rate": lrs}
        if loss:
            cols["train"] = c.loss
        pcsv.write_csv(pa.table(cols), path)
        return c

    write(tmp_path / "seen.csv", [("constant", 2000, "constant"), ("cosine", 2000, "cosine")])
    unseen = write(tmp_path / "new.csv", [("wsd", 2000, "wsd")], loss=False)
    flags = ["--run", "name", "--step", "it", "--lr", "learning_rate"]
    assert main(["fit", str(tmp_path / "seen.csv"), *flags, "--loss", "train", "--law", "lr_annealing",
                 "--bootstrap", "0", "--json", str(tmp_path / "fit.json")]) == 0
    assert json.loads((tmp_path / "fit.json").read_text())["curve_law"]["law"] == "lr_annealing"
    assert main(["predict", str(tmp_path / "fit.json"), str(tmp_path / "new.csv"), *flags,
                 "--out", str(tmp_path / "out.csv")]) == 0
    predicted = pcsv.read_csv(tmp_path / "out.csv").column("predicted_loss").to_numpy()
    # logged every 100 steps: the trapezoid between logged LRs stands in for the exact schedule
    assert np.abs(predicted / unseen.loss - 1).max() < 0.02
    assert main(["fit", str(tmp_path / "seen.csv"), *flags, "--loss", "train", "--law", "chinchilla"]) == 2
    assert "curve fit takes" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "seen.csv"), *flags, "--loss", "train", "--law", "lr_annealing",
                 "--bootstrap", "0", "--burn-in", "0.5", "--json", str(tmp_path / "late.json")]) == 0
    late = json.loads((tmp_path / "late.json").read_text())["curve_law"]
    assert late["n_points"] < json.loads((tmp_path / "fit.json").read_text())["curve_law"]["n_points"]
    for bad in (["--burn-in", "1.2"], ["--burn-in", "0.2", "--law", "auto"]):
        assert main(["fit", str(tmp_path / "seen.csv"), *flags, "--loss", "train", "--law", "lr_annealing",
                     *bad]) == 2
        assert "--burn-in" in capsys.readouterr().err


@pytest.mark.slow  # eight fits and two refits: about 5 s
def test_auto_passes_over_a_choice_whose_fit_on_every_point_is_not_finite(monkeypatch):
    seen = with_transient(truth_curves(TISSUE, "lr_annealing",
                                       [("constant", 2000, "constant"), ("cosine", 2000, "cosine")]))
    real = curve_fit_module.fit_curves

    def runs_off(curves, law="multi_power", **kw):   # the best choice's refit runs to C = inf
        fitted = real(curves, law, **kw)
        if law == "lr_annealing" and kw.get("burn_in") == 0.3:
            return CurveFit(fitted.form, {**fitted.values, "C": float("inf")}, 0.0, 0, 0)
        return fitted

    monkeypatch.setattr(curve_fit_module, "fit_curves", runs_off)
    fitted = curve_fit_module.choose_curve_law(seen, joint=False)
    assert "passed over" in fitted.chosen and "lr_annealing at burn-in 30%" in fitted.chosen
    assert np.isfinite(list(fitted.values.values())).all()
