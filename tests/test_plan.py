"""The planner: exact FLOPs within 2% of each budget in whole steps, brackets around N*, stable ids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.designs import DESIGNS, make_plan
from scaling_orchestrator.orchestrator.plan.build import HELD_OUT, makespan, select_sizes
from scaling_orchestrator.orchestrator.spec.sections.design import KINDS
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, load_sweep, parse_sweep
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec

ROOT = Path(__file__).resolve().parents[1]


def spec(**overrides) -> dict:
    d = {
        "name": "t",
        "budgets_flops": [2e11, 5e11, 1.25e12],
        "held_out_budgets_flops": [6e12],
        "sizes_per_budget": 5,
        "model": {"depth": {"min": 1, "max": 8}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128},
        "data": {"corpus": "pydoc", "tokenizer": "bpe", "vocab_size": 1024},
        "train": {"batch_tokens": 2048},
    }
    d.update(overrides)
    return d


@pytest.fixture(scope="module")
def plan():
    return make_plan(parse_sweep(spec()))


def test_every_trial_is_whole_steps_within_two_percent(plan):
    assert len(plan.trials) == 20
    for t in plan.trials:
        batch = t.train.batch_tokens
        assert t.train.total_tokens % batch == 0 and t.train.total_steps >= 25
        assert abs(t.flops / t.budget_flops - 1) <= 0.02
        # steps = round(C / (flops_per_token * batch_tokens)): the nearest whole step count
        assert t.train.total_steps == round(t.budget_flops / (t.shape.flops_per_token() * batch))
        assert (
            t.train.eval_every_tokens % batch == 0 and 0 < t.train.eval_every_tokens <= t.train.total_tokens
        )


def test_worked_trial(plan):
    # 2L x 32d x 2h at 1.25e12: 948 steps of 2048 tokens (Chinchilla App. F count, vocab 1024).
    t = next(t for t in plan.trials if t.budget_flops == 1.25e12 and t.shape.n_layer == 2)
    fpt = t.shape.flops_per_token()
    assert t.train.total_steps == 948 == round(1.25e12 / (fpt * 2048))
    assert t.train.eval_every_tokens == (948 // 8) * 2048  # evals_per_trial 8


def test_ids_unique_and_stable(plan):
    ids = [t.trial_id for t in plan.trials]
    assert len(set(ids)) == len(ids)
    again = make_plan(parse_sweep(spec()))
    assert [t.trial_id for t in again.trials] == ids
    two_seeds = make_plan(parse_sweep(spec(seeds=[0, 1])))
    assert len(two_seeds.trials) == 2 * len(ids)
    assert len({t.trial_id for t in two_seeds.trials}) == 2 * len(ids)
    assert set(ids) <= {t.trial_id for t in two_seeds.trials}  # seed 0 trials keep their ids


def test_sizes_bracket_the_prior(plan):
    prior = plan.sweep.prior
    for budget in plan.sweep.budgets_flops + plan.sweep.held_out_budgets_flops:
        params = [t.shape.param_counts()["total"] for t in plan.trials if t.budget_flops == budget]
        assert len(params) == 5
        assert min(params) < prior.optimal_params(budget) < max(params)
    assert not plan.notes


def test_select_sizes_spans_a_quarter_to_four_times():
    # A fine ladder (d_model in steps of 16): picks land near N* x 4^{-1, -.5, 0, .5, 1}.
    shapes = [
        ModelShape(n_layer=4, d_model=16 * k, n_head=1, vocab_size=256, seq_len=64) for k in range(1, 80)
    ]
    n_star = 2e6
    chosen = select_sizes(shapes, n_star, 5, 4.0)
    params = [s.param_counts()["total"] for s in chosen]
    assert params == sorted(params) and len(set(params)) == 5
    for p, target in zip(params, [n_star / 4, n_star / 2, n_star, n_star * 2, n_star * 4]):
        assert abs(math.log(p / target)) < 0.1


def test_select_sizes_off_the_dial_end_stays_distinct():
    shapes = [ModelShape.from_depth(d, vocab_size=256, seq_len=64) for d in range(1, 7)]
    chosen = select_sizes(shapes, 1.0, 4, 4.0)  # N* far below the smallest: the 4 smallest
    assert [s.n_layer for s in chosen] == [1, 2, 3, 4]


def test_held_out_trials_are_ordinary_scaling_trials(plan):
    held = [t for t in plan.trials if t.budget_flops == 6e12]
    assert held and all(t.group == HELD_OUT and t.kind == "scaling" for t in held)
    assert all(t.group == "" for t in plan.trials if t.budget_flops < 6e12)


def test_too_few_steps_are_dropped_with_a_reason():
    plan = make_plan(parse_sweep(spec(budgets_flops=[1e11, 5e11, 1.25e12])))
    dropped = [d for d in plan.dropped if d.budget_flops == 1e11]
    assert [d.shape.n_layer for d in dropped] == [4, 5]
    assert "21 steps of 2048 tokens < train.min_steps 25" in dropped[0].reason
    assert sum(t.budget_flops == 1e11 for t in plan.trials) == 3


def test_budget_left_with_under_three_sizes_is_a_spec_error():
    with pytest.raises(SpecError, match=r"budgets_flops 5e\+10: only 2 of 5 sizes"):
        make_plan(parse_sweep(spec(budgets_flops=[5e10, 5e11, 1.25e12])))


def test_eval_every_tokens_rounds_to_whole_steps():
    plan = make_plan(parse_sweep(spec(train={"batch_tokens": 2048, "eval_every_tokens": 5000})))
    assert {t.train.eval_every_tokens for t in plan.trials} == {4096}  # round(5000 / 2048) = 2 steps


def test_makespan_longest_first():
    assert makespan([3, 3, 2, 2, 2], 2) == 7  # LPT: {3, 2, 2} and {3, 2}; the optimum is 6
    assert makespan([5, 1, 1], 1) == 7
    assert makespan([], 4) == 0


def test_estimates(plan):
    t = plan.trials[0]
    assert plan.trial_seconds(t) == pytest.approx(t.flops / 4.5e10 + 2.0)
    serial = sum(plan.trial_seconds(t) for t in plan.trials)
    assert plan.concurrency == 1 and plan.estimated_wall_seconds == pytest.approx(serial)
    assert plan.total_flops == pytest.approx(sum(t.flops for t in plan.trials))
    assert plan.total_flops == pytest.approx(5 * (2e11 + 5e11 + 1.25e12 + 6e12), rel=0.01)


def test_default_cpu_throughput_matches_the_demo_measurement():
    """The demo's 16 trials took 414 s two at a time on 2 cores; without its throughput section
    the default estimate is (3.52e13 / 4.5e10 + 16 x 2 s) / 2 = 407 s, about 7 minutes."""
    raw = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    del raw["throughput"]
    demo = make_plan(parse_sweep(raw, "demo.yaml"))
    assert demo.sweep.flops_per_second == 4.5e10 and demo.concurrency == 2 and len(demo.trials) == 16
    assert demo.total_flops == pytest.approx(3.52e13, rel=0.01)
    assert 360 < demo.estimated_wall_seconds < 480


def test_render_and_json(plan):
    text = plan.render()
    assert "budget" in text and "tok/param" in text and "20 trials" in text and "held out" in text
    assert len(text.splitlines()) == 3 + 1 + 20 + 1 + 1 + 2 + 1  # the data line and the kept weights line
    assert "data: not prepared yet, so epochs are unknown" in text
    data = json.loads(plan.to_json())
    assert data["n_trials"] == 20 and len(data["trials"]) == 20
    row = data["trials"][0]
    assert row["trial_id"] == plan.trials[0].trial_id
    assert TrialSpec.from_dict(row["spec"]).trial_id == row["trial_id"]
    assert data["prior"]["optimal_params"]["1.25e+12"] == pytest.approx(math.sqrt(1.25e12 / 120))


def test_demo_example_plans_interior_brackets():
    plan = make_plan(load_sweep(ROOT / "examples" / "demo.yaml"))
    assert not plan.notes and not plan.dropped
    assert len({t.budget_flops for t in plan.trials}) == 4
    assert max(t.flops for t in plan.trials) < 1e13  # each trial is seconds on one CPU


def test_select_sizes_on_a_coarse_dial_takes_a_run_centred_on_n_star():
    # Depth dial at aspect 16 (params 22k, 62k, 140k, 274k, 482k, ...): only 3 inside 41k/4..41k*4,
    # so the 4 consecutive sizes whose mean log params is nearest log N* (no hole in the bracket).
    shapes = [
        ModelShape.from_depth(d, vocab_size=1024, seq_len=128, aspect_ratio=16, head_dim=16)
        for d in range(1, 9)
    ]
    assert [s.n_layer for s in select_sizes(shapes, 41e3, 4, 4.0)] == [1, 2, 3, 4]
    # 122k sits between the 2nd and 3rd of [1..4] (mean log 85k) rather than [2..5] (184k)
    assert [s.n_layer for s in select_sizes(shapes, 122e3, 4, 4.0)] == [1, 2, 3, 4]
    chosen = select_sizes(shapes, 300e3, 4, 4.0)
    params = [s.param_counts()["total"] for s in chosen]
    assert [s.n_layer for s in chosen] == [3, 4, 5, 6] and params[0] < 300e3 < params[-1]


def test_demo_trial_ids_are_pinned():
    # A trial id names stored results: a change here makes every finished demo trial run again.
    plan = make_plan(load_sweep(ROOT / "examples" / "demo.yaml"))
    first, held = plan.trials[0], plan.trials[-1]
    assert (first.budget_flops, first.size_label, first.group) == (8e11, "d1", "")
    assert first.trial_id == "f7bb95d7f4d2f42e"
    assert (held.budget_flops, held.size_label, held.group) == (4.2e12, "d5", HELD_OUT)
    assert held.trial_id == "02c1080885c5d5d4"


def test_every_trial_carries_its_size_label(plan):
    # aspect 16, head_dim 16: depth 2 of the dial is 2L x 32d -> "d2"
    assert {(t.shape.n_layer, t.size_label) for t in plan.trials} == {(d, f"d{d}") for d in range(1, 7)}
    row = json.loads(plan.to_json())["trials"][-1]
    assert (row["size_label"], row["group"], row["held_out"]) == ("d6", HELD_OUT, True)
    shapes = [
        {"n_layer": 1, "d_model": 32, "n_head": 2},
        {"n_layer": 2, "d_model": 64, "n_head": 4},
        {"n_layer": 3, "d_model": 96, "n_head": 4},
    ]
    explicit = make_plan(parse_sweep(spec(model={"shapes": shapes}, sizes_per_budget=3)))
    assert [t.size_label for t in explicit.trials[:3]] == ["L1xD32", "L2xD64", "L3xD96"]


def test_dropped_reason_is_the_spec_min_steps_rule():
    # Recipe.too_few_steps words both: the planner's drop here and the spec's refusal of a budget.
    plan = make_plan(parse_sweep(spec(budgets_flops=[1e11, 5e11, 1.25e12])))
    assert plan.dropped[0].reason == "d4: 21 steps of 2048 tokens < train.min_steps 25"
    with pytest.raises(
        SpecError, match=r"the smallest model \(d1\) gets 20 steps of 2048 tokens < train.min_steps 25"
    ):
        parse_sweep(spec(budgets_flops=[1e10, 1e12]))


def test_trial_eval_cadence_is_the_loop_cadence(plan):
    # The loop evaluates every TrainConfig.eval_every_steps; the planner's interval must be that.
    for t in plan.trials:
        assert t.train.eval_every_steps * t.train.batch_tokens == t.train.eval_every_tokens
        assert t.train.eval_every_steps == t.train.total_steps // 8


def test_render_says_the_headline_fit_uses_held_out_runs(plan):
    text = plan.render()
    assert "* held out of the back-test fit; the headline fit uses every run" in text
    assert "kept out of" not in text


def test_every_design_the_spec_accepts_has_a_plan_and_a_queue():
    assert set(DESIGNS) == set(KINDS)  # the registry and the spec's parser name the same kinds


def test_the_plan_says_what_it_read_before_planning(tmp_path):
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"isoflop": {"a": 0.5, "k_params": 0.1}}))
    sweep = parse_sweep(spec(prior={"from_fit": str(fit)}))
    assert sweep.prior.coefficient == 0.0  # parsing read nothing
    plan = make_plan(sweep)
    assert plan.sweep.prior.optimal_params(1e12) == pytest.approx(1e5)
    assert plan.notes[0] == f"prior.from_fit: isoflop fit in {fit}: N* = 0.1 C^0.5"
    assert not any(n.startswith("prior.from_fit") for n in make_plan(parse_sweep(spec())).notes)
