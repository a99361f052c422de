"""An adaptive study adds up: the live line and `scaling status` count every round's trials,
`scaling next` writes the study's whole spec, and fit, report and status take the study's
target and say its rounds and stop. Simulated trials, no Ray started (a few seconds each)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import yaml

from scaling_orchestrator.cli.study import main
from scaling_orchestrator.orchestrator.backends.simulate import simulate_train
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.designs.adaptive import candidates, make_queue
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep, parse_sweep
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row
from scaling_orchestrator.orchestrator.store.status import Tally, status_text

EXAMPLE = "examples/adaptive.yaml"


def sweep_of(tmp_path):
    raw = yaml.safe_load(open(EXAMPLE))
    raw["design"]["bootstrap"] = 50
    raw["storage"] = str(tmp_path / "res")
    return parse_sweep(raw, EXAMPLE)


def run_trial(spec, store: Store) -> None:
    simulate_train(spec, spec.train, on_eval=lambda m, _: store.write_row(measurement_row(spec, m)))


def seeded(tmp_path):
    """The seed round run into res/, its plan written as `scaling run` writes it."""
    plan = make_plan(sweep_of(tmp_path))
    store = Store(plan.sweep.storage)
    store.write_plan(plan.trials, plan.sweep.spec)
    for spec in plan.trials:
        run_trial(spec, store)
    return plan, store


def test_live_line_counts_the_trials_a_queue_adds():
    """The seed round is planned; two later trials join from the queue: 11 trials, 100%."""
    from scaling_orchestrator.orchestrator.execution.progress import make_live_progress

    plan = make_plan(parse_sweep(yaml.safe_load(open(EXAMPLE)), EXAMPLE))
    later = [t for t in candidates(plan.sweep) if t.trial_id not in {s.trial_id for s in plan.trials}][:2]
    queue = SimpleNamespace(planned=lambda: [*plan.trials, *later])
    lines = []
    live = make_live_progress(plan.trials, set(), stream=SimpleNamespace(write=lines.append, flush=print),
                              queue=queue)
    for spec in [*plan.trials, *later]:
        trial = SimpleNamespace(config={"trial": spec.to_dict()}, last_result={"status": "ok"})
        live.on_trial_start(0, [], trial)
        live.on_trial_result(0, [], trial, {"flops": spec.flops})
        live.on_trial_complete(0, [], trial)
    live.on_experiment_end([])
    assert "11 done, 0 running, 0 pending, 0 failed" in lines[-2] and "(100%)" in lines[-2]
    tally = Tally(plan.trials, set())
    tally.add(later)  # queued, not started: pending
    assert tally.line().startswith("[scaling] 0 done, 0 running, 11 pending")


def test_status_counts_every_round_and_says_the_stop(tmp_path, capsys):
    plan, store = seeded(tmp_path)
    res = plan.sweep.storage
    later = [t for t in candidates(plan.sweep) if t.trial_id not in {s.trial_id for s in plan.trials}][:3]
    listed = load_sweep_with(tmp_path, later)  # round 2, run from a `scaling next` spec
    store.write_plan(listed.trials, listed.sweep.spec)  # what `scaling run next.yaml` writes
    for spec in listed.trials[:2]:
        run_trial(spec, store)
    assert [t.trial_id for t in store.read_plan()][:3] == [t.trial_id for t in listed.trials]
    text = status_text(res)
    assert "12 trials | 11 done, 0 diverged, 0 failed, 0 running, 1 pending" in text
    assert "adaptive study: N* at 1e+21 FLOPs; 2 rounds (9 + 2 trials)" in text
    assert "not stopped yet" in text
    state = {"target_flops": 1e21, "finished": True, "stop": "tolerance", "message": "N* within x/÷1.25",
             "trials": [dataclasses.replace(later[2], round=2).to_dict()]}
    (tmp_path / "res" / "_adaptive.json").write_text(json.dumps(state))
    assert main(["status", res]) == 0
    out = capsys.readouterr().out
    assert "12 trials |" in out and "stopped (tolerance): N* within x/÷1.25" in out
    run_trial(dataclasses.replace(later[2], round=3), store)  # a round after the stop: it goes on
    assert "not stopped yet" in status_text(res)


def load_sweep_with(tmp_path, trials):
    raw = yaml.safe_load(open(EXAMPLE))
    raw["storage"] = str(tmp_path / "res")
    raw["design"] = {"kind": "adaptive", "target_flops": 1e21, "study_budget_flops": 2e20,
                     "trials": [{"budget_flops": t.budget_flops, "n_layer": t.shape.n_layer,
                                 "d_model": t.shape.d_model, "seed": 0, "round": 2, "reason": "round 2: x"}
                                for t in trials]}
    return make_plan(parse_sweep(raw, EXAMPLE))


def test_next_writes_the_whole_spec_and_fit_takes_the_target(tmp_path, capsys):
    plan, store = seeded(tmp_path)
    res, out = plan.sweep.storage, tmp_path / "next.yaml"
    argv = ["next", res, "--target-flops", "1e21", "--budget-flops", "2e19", "--bootstrap", "50"]
    assert main([*argv, "--out", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    source = yaml.safe_load(open(EXAMPLE))
    for section in ("throughput", "prior", "train", "data", "resources", "simulate", "model",
                    "max_concurrent_trials", "max_failures", "sizes_per_budget"):
        assert written[section] == source[section], section
    nxt = make_plan(load_sweep(out))
    assert nxt.sweep.flops_per_second == 1e30 and nxt.estimated_wall_seconds < 60
    assert json.loads((tmp_path / "res" / "_next.json").read_text())["n_trials"] == 9
    capsys.readouterr()
    assert main(["fit", res, "--bootstrap", "0"]) == 0
    text = capsys.readouterr().out
    assert "at 1e21 FLOPs: train" in text  # not 3x and 10x the largest budget (1e19) as well
    assert "at 3e19 FLOPs" not in text and "at 1e20 FLOPs" not in text
    assert "adaptive study: N* at 1e+21 FLOPs; 1 round (9 trials)" in text


def test_report_says_the_study_under_its_title(tmp_path, capsys):
    plan, store = seeded(tmp_path)
    assert main(["report", plan.sweep.storage, "--bootstrap", "0", "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0] == "## The adaptive study" and len(headings) > 1 and "N* at 1e+21 FLOPs" in md
    assert "The adaptive study</h2>" in (tmp_path / "r" / "report.html").read_text()


def test_old_plan_files_stay_readable(tmp_path):
    plan = make_plan(sweep_of(tmp_path))
    store = Store(str(tmp_path / "old"))
    (tmp_path / "old" / "_plan.json").write_text(json.dumps([t.to_dict() for t in plan.trials]))
    assert [t.trial_id for t in store.read_plan()] == [t.trial_id for t in plan.trials]
    assert store.read_plan_spec() is None
    assert make_queue(plan, [], store).has_work()
