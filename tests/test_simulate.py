"""The simulate backend (orchestrator/simulate.py): its spec section, its loss curves and noise,
resume and branch semantics, and a simulated grid study through run_plan on a local Ray.

Unit tests run in milliseconds; the Ray test runs 10 simulated trials (about 30 s: Tune's
per-trial overhead, ~1.5 s each on 2 cores, dominates).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig, lr_at
from scaling_orchestrator.orchestrator.backends.simulate import (
    ANNEAL_GAP,
    eval_steps,
    law_loss,
    simulate_train,
)
from scaling_orchestrator.orchestrator.spec.sections.simulate import parse_simulate
from scaling_orchestrator.orchestrator.spec.sweep import SpecError
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec

EPOCH = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
SIM = {"law": "chinchilla", "params": EPOCH, "noise": 0.01, "seed": 0}
SHAPE = ModelShape(n_layer=8, d_model=512, n_head=8, vocab_size=32768, seq_len=1024)


def trial(schedule="cosine", seed=0, simulate=SIM, total_steps=4000, **train) -> TrialSpec:
    config = TrainConfig(total_tokens=total_steps * 262144, batch_tokens=262144,
                         schedule=schedule, seed=seed, **train)
    return TrialSpec(sweep="sim", kind="scaling", shape=SHAPE, data=DataSpec(), train=config,
                     budget_flops=config.total_tokens * SHAPE.flops_per_token(),
                     simulate=parse_simulate(simulate))


def run(spec, **kw):
    seen = []
    final = simulate_train(spec, spec.train, on_eval=lambda m, ckpt: seen.append((m, ckpt)), **kw)
    return final, seen


@pytest.mark.parametrize("raw, error", [
    ({"law": "nope", "params": EPOCH}, "simulate.law: 'nope' must be one of chinchilla"),
    ({"params": {**EPOCH, "gamma": 1}}, "simulate.params.gamma: unknown key"),
    ({"params": {k: v for k, v in EPOCH.items() if k != "beta"}},
     "simulate.params: beta missing; the chinchilla law needs E, A, B, alpha, beta"),
    ({"params": {**EPOCH, "A": "lots"}}, "simulate.params.A: 'lots' must be a number"),
    ({"params": EPOCH, "noise": -0.1}, "simulate.noise: -0.1 must be a number in [0, 1)"),
    ({"params": EPOCH, "seed": 1.5}, "simulate.seed: 1.5 must be a whole number >= 0"),
    ({"params": EPOCH, "nois": 0.1}, "simulate.nois: unknown key; did you mean 'noise'?"),
    ({"law": "data_constrained", "params": {}}, "simulate.law: 'data_constrained' needs unique"),
    ({"params": {**EPOCH, "E": -9}}, "simulate.params: the chinchilla law gives loss"),
])
def test_parse_errors_are_one_line_naming_the_field(raw, error):
    with pytest.raises(SpecError) as info:
        parse_simulate(raw)
    assert str(info.value).startswith(error) and "\n" not in str(info.value)


def test_parse_fills_defaults_and_reads_yaml_strings():
    got = parse_simulate({"params": {**EPOCH, "A": "4.82e2"}})
    assert got == {"law": "chinchilla", "params": {**EPOCH, "A": 482.0}, "noise": 0.01, "seed": 0}


def test_final_loss_is_the_law_without_noise_and_the_cadence_is_the_loops():
    spec = trial(simulate={**SIM, "noise": 0.0}, eval_at_tokens=(1000 * 262144,))
    final, seen = run(spec)
    steps = [m.step for m, _ in seen]
    assert steps == eval_steps(spec.train, 0) == sorted({500 * k for k in range(1, 9)} | {1000})
    law = float(law_loss(spec.simulate, SHAPE.param_counts()["total"], spec.train.total_tokens))
    assert final.final and final.val_loss == pytest.approx(law, rel=1e-12)
    assert final.flops == spec.train.total_tokens * SHAPE.flops_per_token() == spec.flops
    assert all(m.status == "ok" and math.isnan(m.val_bpb) for m, _ in seen)


def test_curve_is_shaped_by_the_schedule():
    """Above the law by ANNEAL_GAP x (lr - lr_end) / peak of its reducible part L - E: cosine
    closes the gap as the LR anneals, WSD holds it until its decay, constant LR has none; every
    curve meets the law at its last step."""
    N = SHAPE.param_counts()["total"]
    for schedule in ("cosine", "constant", "wsd"):
        spec = trial(schedule, simulate={**SIM, "noise": 0.0})
        _, seen = run(spec)
        end = lr_at(spec.train.total_steps - 1, spec.train)
        for m, _ in seen:
            law = float(law_loss(spec.simulate, N, m.tokens))
            expected = ANNEAL_GAP * (lr_at(m.step - 1, spec.train) - end) / spec.train.lr
            assert (m.val_loss - law) / (law - EPOCH["E"]) == pytest.approx(expected, abs=1e-12)
        assert all(np.diff([m.val_loss for m, _ in seen]) < 0)
        assert seen[-1][0].val_loss == pytest.approx(
            float(law_loss(spec.simulate, N, spec.train.total_tokens))
        )


def test_noise_is_per_run_lognormal_and_reproducible():
    logs = []
    for seed in range(300):
        spec = trial(seed=seed)
        final, _ = run(spec)
        law = float(law_loss(spec.simulate, SHAPE.param_counts()["total"], spec.train.total_tokens))
        logs.append(math.log(final.val_loss / law))
    assert np.std(logs) == pytest.approx(0.01, rel=0.15) and abs(np.mean(logs)) < 0.003
    again, _ = run(trial(seed=7))
    assert math.log(again.val_loss / law) == pytest.approx(logs[7], abs=1e-15)
    other, _ = run(trial(seed=7, simulate={**SIM, "seed": 1}))
    assert other.val_loss != again.val_loss


def test_resume_continues_the_same_curve(tmp_path):
    spec = trial()
    full, seen = run(spec, checkpoint_dir=str(tmp_path / "full"))
    mid = tmp_path / "mid"

    def stop_at_third(m, ckpt):
        if m.step == 1500:
            shutil.copytree(ckpt, mid)

    simulate_train(spec, spec.train, on_eval=stop_at_third, checkpoint_dir=str(tmp_path / "a"))
    resumed, later = run(spec, checkpoint_dir=str(tmp_path / "b"), resume_from=str(mid))
    assert [m.step for m, _ in later] == [m.step for m, _ in seen if m.step > 1500]
    assert [m.val_loss for m, _ in later] == [m.val_loss for m, _ in seen if m.step > 1500]
    assert resumed.val_loss == full.val_loss and resumed.wall_seconds >= later[0][0].wall_seconds
    again, repeat = run(spec, resume_from=str(tmp_path / "full"))  # resumed at the end
    assert len(repeat) == 1 and again.step == full.step and again.val_loss == full.val_loss


def test_branch_starts_from_its_trunk_and_keeps_its_noise(tmp_path):
    trunk = trial("constant", total_steps=4000)
    _, seen = run(trunk, checkpoint_dir=str(tmp_path / "trunk"))
    kept = tmp_path / "kept"
    simulate_train(
        trunk,
        trunk.train,
        checkpoint_dir=str(tmp_path / "t2"),
        on_eval=lambda m, c: shutil.copytree(c, kept) if m.step == 2000 else None,
    )
    branch = dataclasses.replace(
        trial("wsd", total_steps=2500), parent_trial_id=trunk.trial_id, branch_tokens=2000 * 262144
    )
    final, steps = run(branch, start_from=str(kept))
    assert steps[0][0].step > 2000 and final.step == 2500
    law = float(law_loss(branch.simulate, SHAPE.param_counts()["total"], 2500 * 262144))
    trunk_factor = seen[0][0].val_loss / float(
        law_loss(trunk.simulate, SHAPE.param_counts()["total"], seen[0][0].tokens)
    )
    assert final.val_loss / law == pytest.approx(trunk_factor, rel=1e-12)
    with pytest.raises(ValueError, match="not before this run's last step"):
        run(dataclasses.replace(trial("wsd", total_steps=2000)), start_from=str(kept))


@pytest.mark.slow  # a Python subprocess
def test_importing_the_backend_loads_no_torch():
    code = "import sys, scaling_orchestrator.orchestrator.backends.simulate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.slow  # a local Ray
@pytest.mark.ray
def test_simulated_grid_through_run_plan(local_ray, tmp_path):
    """examples/simulated.yaml cut to its 2 smallest budgets and 5 sizes: 10 trials through Tune, the store
    and the fit; every row says backend simulate and the report's title says SIMULATED."""
    from scaling_orchestrator.analysis import FitOptions, fit
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.execution.run import run_plan
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
    from scaling_orchestrator.orchestrator.store.results import Store
    from scaling_orchestrator.orchestrator.store.weights import kept_weights

    sweep = load_sweep("examples/simulated.yaml")
    sweep = dataclasses.replace(sweep, budgets_flops=sweep.budgets_flops[:2], held_out_budgets_flops=(),
                                sizes_per_budget=5)
    plan = make_plan(sweep)
    summary = run_plan(plan, str(tmp_path / "res"), progress=False)
    assert len(summary.completed) == len(plan.trials) == 10 and not summary.failed
    table = Store(str(tmp_path / "res")).read_table()
    assert set(table["backend"].to_pylist()) == {"simulate"}
    store = Store(str(tmp_path / "res"))  # a rehearsal trains no model: nothing kept, and it says so
    assert "simulate backend" in store.read_meta(plan.trials[0].trial_id)["weights"]
    assert kept_weights(store) == {}
    finals = table.filter(table["final"])
    law = [
        float(law_loss(sweep.simulate, n, d))
        for n, d in zip(finals["params"].to_pylist(), finals["tokens"].to_pylist())
    ]
    ratio = np.log(np.asarray(finals["val_loss"].to_pylist()) / law)
    assert np.all(np.abs(ratio) < 0.05)  # 1% noise, 5 sd
    paths = fit(str(tmp_path / "res"), options=FitOptions(n_bootstrap=0)).write_report(tmp_path / "report")
    text = paths["markdown"].read_text()
    assert text.startswith("# SIMULATED") and "not a measurement" in text
    assert "curves" in paths  # every trial's curve in _curves/, drawn in the report
