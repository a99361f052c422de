"""The adaptive design (orchestrator/design_adaptive.py, adaptive_queue.py) and `scaling next`
on simulated trials (examples/adaptive.yaml's law).

- spec errors: one line each (milliseconds);
- the queue driven by hand, trials drawn by scaling_orchestrator.orchestrator.backends.simulate with 3 running
at once, no
  Ray (slow: each refit is a fit plus a 50-resample bootstrap, about 2 s; ~40 s in all);
- `scaling next` on a results folder of the seed round, and `scaling plan` on its spec (~10 s);
- the study through run_plan on a local Ray, and through a user's own tune.Tuner with
  adaptive_searcher (slow, ray: ~60 s each on 2 cores, Tune's ~1.5 s per trial plus the refits).
"""

from __future__ import annotations

import json

import pytest
import yaml

from scaling_orchestrator.cli.study import main
from scaling_orchestrator.orchestrator.backends.simulate import simulate_train
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.designs.adaptive import make_queue
from scaling_orchestrator.orchestrator.designs.queue import FINISHED
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, load_sweep, parse_sweep
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row

EXAMPLE = "examples/adaptive.yaml"


def example(**design) -> dict:
    raw = yaml.safe_load(open(EXAMPLE))
    raw["design"] = {**raw["design"], "bootstrap": 50, **design}
    return raw


def sweep_of(**design):
    return parse_sweep(example(**design), EXAMPLE)


def run_trial(spec, store: Store) -> None:
    """One simulated trial to its end, its rows written as the worker writes them."""
    simulate_train(spec, spec.train, on_eval=lambda m, _: store.write_row(measurement_row(spec, m)))


def drive(queue, store, slots: int = 3, limit: int = 200) -> list:
    """Tune's part, by hand: take while slots are free, finish the oldest running trial."""
    running, started = [], []
    for _ in range(limit):
        spec = queue.take(store) if len(running) < slots else None
        if spec == FINISHED:
            return started
        if spec is not None:
            running.append(spec)
            started.append(spec)
            continue
        assert running, "the queue waits with nothing running"
        done = running.pop(0)
        run_trial(done, store)
        queue.on_complete(done, {}, store, False)
    raise AssertionError(f"no FINISHED after {limit} steps")


@pytest.mark.parametrize(
    "change, error",
    [
        ({"target_flops": 1e20}, "design.target_flops: 1e+20 must be a FLOP count above the largest"),
        ({"study_budget_flops": 1e19}, "design.study_budget_flops: 1e+19 must be at least round 1's"),
        ({"tolerance": 1.0}, "design.tolerance: 1 must be a factor > 1"),
        ({"law": "data_constrained"}, "design.law: 'data_constrained' must be one of chinchilla"),
        ({"tolerence": 1.2}, "design.tolerence: unknown key; did you mean 'tolerance'?"),
        (
            {"trials": [{"budget_flops": 1e18, "n_layer": 5, "d_model": 999}]},
            "design.trials[0]: no shape of 5 layers x 999 in the model section",
        ),
    ],
)
def test_design_errors_are_one_line(change, error):
    with pytest.raises(SpecError) as info:
        make_plan(sweep_of(**change))
    assert error in str(info.value) and "\n" not in str(info.value)


def test_held_out_budgets_are_refused():
    raw = example()
    raw["held_out_budgets_flops"] = [1e21]
    with pytest.raises(SpecError, match="held_out_budgets_flops: not used by the adaptive design"):
        parse_sweep(raw, EXAMPLE)


def test_plan_is_the_seed_round():
    plan = make_plan(sweep_of())
    assert len(plan.trials) == 9 and {t.round for t in plan.trials} == {1}
    assert len({t.budget_flops for t in plan.trials}) == 3
    assert all(t.reason.startswith("round 1: seed") and t.backend == "simulate" for t in plan.trials)
    assert plan.extra["adaptive"]["n_candidates"] > 30
    assert plan.total_flops == pytest.approx(plan.extra["adaptive"]["seed_flops"])


@pytest.mark.slow
def test_queue_runs_a_study_to_its_stop_proposing_while_trials_run(tmp_path):
    sweep = sweep_of(study_budget_flops=1.2e20)
    plan = make_plan(sweep)
    store = Store(str(tmp_path))
    started = drive(make_queue(plan, list(plan.trials), store), store)
    state = json.loads((tmp_path / "_adaptive.json").read_text())
    assert state["finished"] and state["stop"] in ("tolerance", "budget")
    assert state["spent_flops"] <= 1.2e20 and len(started) > 9
    later = [t for t in started if t.round > 1]
    assert later and all(t.reason.startswith(f"round {t.round}: ") for t in later)
    assert any(r["n_running"] > 0 for r in state["rounds"])  # not lock-step rounds
    assert {t["trial_id"] for t in state["trials"]} == {t.trial_id for t in later}
    rows = store.read_table()
    assert set(rows["round"].to_pylist()) == {t.round for t in started}


@pytest.mark.slow  # seconds of fitting
def test_next_writes_a_spec_that_plans_the_chosen_trials(tmp_path, capsys):
    plan = make_plan(sweep_of())
    store = Store(str(tmp_path / "res"))
    store.write_plan(plan.trials)
    for spec in plan.trials:
        run_trial(spec, store)
    out = tmp_path / "next.yaml"
    assert (
        main(
            [
                "next",
                str(tmp_path / "res"),
                "--target-flops",
                "1e21",
                "--budget-flops",
                "2e19",
                "--bootstrap",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "scaling next: N*(1e21)" in printed and f"wrote {out}" in printed
    nxt = make_plan(load_sweep(out))
    assert nxt.sweep.name == "adaptive" and nxt.sweep.storage == str(tmp_path / "res")
    assert 1 <= len(nxt.trials) and nxt.total_flops <= 2e19 * 1.02
    assert all(t.round == 2 and t.reason.startswith("round 2: ") for t in nxt.trials)
    seen = {(t.shape.n_layer, t.shape.d_model, t.budget_flops) for t in plan.trials}
    assert not seen & {(t.shape.n_layer, t.shape.d_model, t.budget_flops) for t in nxt.trials}
    assert main(["next", str(tmp_path / "res"), "--target-flops", "1e19", "--budget-flops", "2e19"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target-flops 1e19: must exceed the largest budget" in err[0]


def adaptive_spec(tmp_path) -> str:
    raw = example(study_budget_flops=5.5e19)
    raw["storage"] = str(tmp_path / "res")
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.slow
@pytest.mark.ray
def test_adaptive_study_through_run_plan(local_ray, tmp_path, capsys):
    from scaling_orchestrator.orchestrator.execution.run import run_plan

    plan = make_plan(load_sweep(adaptive_spec(tmp_path)))
    store = Store(str(tmp_path / "res"))
    for spec in plan.trials:  # round 1 final before the run: the study must still go on
        run_trial(spec, store)
    assert make_queue(plan, [], store).has_work()
    summary = run_plan(plan, progress=False)
    again = run_plan(plan, progress=False)  # the same question, answered: nothing runs
    state = json.loads((tmp_path / "res" / "_adaptive.json").read_text())
    assert state["finished"] and not summary.failed
    assert len(summary.skipped) == 9 and len(summary.completed) == len(state["trials"]) > 0
    assert "scaling: adaptive study stopped" in capsys.readouterr().out
    assert again.completed == [] and not again.failed and not make_queue(plan, [], store).has_work()
    rows = Store(str(tmp_path / "res")).read_table()
    assert set(rows["backend"].to_pylist()) == {"simulate"} and max(rows["round"].to_pylist()) >= 2


@pytest.mark.slow
@pytest.mark.ray
def test_adaptive_searcher_in_a_users_tuner(local_ray, tmp_path):
    from ray import tune

    from scaling_orchestrator.orchestrator.execution.searcher import adaptive_searcher
    from scaling_orchestrator.orchestrator.execution.worker import with_trial_resources

    spec_path = adaptive_spec(tmp_path)
    searcher = adaptive_searcher(spec_path, str(tmp_path / "mine"))
    one = make_plan(load_sweep(spec_path)).trials[0]
    tuner = tune.Tuner(
        with_trial_resources(one),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0),
    )
    results = tuner.fit()
    errors = [str(r.error).splitlines()[-1] for r in results if r.error]
    assert not errors, errors[:3]
    state = json.loads((tmp_path / "mine" / "_adaptive.json").read_text())
    assert state["finished"] and len(results) == 9 + len(state["trials"]) > 9
    rows = Store(str(tmp_path / "mine")).read_table()
    assert len(set(rows["trial_id"].to_pylist())) == len(results)
