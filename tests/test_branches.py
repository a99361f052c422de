"""Branching study design: the cooldown schedule, a branch continuing its trunk, the planner."""

import dataclasses
import json
from pathlib import Path

import pytest

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.checkpoint import CHECKPOINT_FILE
from scaling_orchestrator.models.training.loop import TrainConfig, lr_at, train

TINY = ModelShape(n_layer=2, d_model=64, n_head=2, vocab_size=256, seq_len=64)
BATCH = 1024


def _config(**overrides) -> TrainConfig:
    base = dict(total_tokens=40 * BATCH, batch_tokens=BATCH, eval_tokens=2048, threads=1, device="cpu",
                lr=3e-3, warmup_tokens=4 * BATCH)
    return TrainConfig(**{**base, **overrides})


# -- schedule -----------------------------------------------------------------------------------
def test_one_minus_sqrt_cooldown_follows_hagele_eq_1():
    config = _config(total_tokens=100 * BATCH, schedule="wsd", decay_fraction=0.2, decay_shape="1-sqrt",
                     min_lr_ratio=0.0, warmup_tokens=0, warmup_fraction=0.05)
    assert lr_at(4, config) == pytest.approx(3e-3)  # warmup: 5 steps
    assert lr_at(79, config) == pytest.approx(3e-3)  # the last constant step
    # Decay step k of 20 is at progress k/20: step 84 is the 5th, lr = 3e-3 (1 - sqrt(0.25)).
    assert lr_at(84, config) == pytest.approx(1.5e-3)
    assert lr_at(99, config) == pytest.approx(0.0)
    linear = dataclasses.replace(config, decay_shape="linear")
    assert lr_at(84, linear) == pytest.approx(2.25e-3)


def test_shared_warmup_in_tokens_makes_trunk_and_branch_agree_before_the_branch_point():
    trunk = _config(total_tokens=80 * BATCH, schedule="constant")
    branch = _config(total_tokens=50 * BATCH, schedule="wsd", decay_fraction=0.2, decay_shape="1-sqrt")
    assert [lr_at(s, trunk) for s in range(40)] == [lr_at(s, branch) for s in range(40)]
    assert lr_at(40, branch) < lr_at(40, trunk)  # the branch's 10 decay steps start at step 40
    # With warmup_fraction instead, the two would warm up over 4 and 2 steps: different paths.
    assert _config(total_tokens=80 * BATCH, warmup_tokens=0).warmup_steps == 4


def test_new_fields_check_values_and_round_trip_through_json():
    config = _config(eval_at_tokens=[8 * BATCH, 4 * BATCH, 8 * BATCH])
    assert config.eval_at_tokens == (4 * BATCH, 8 * BATCH)
    assert TrainConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    with pytest.raises(ValueError, match="decay_shape='cosine'"):
        _config(decay_shape="cosine")
    with pytest.raises(ValueError, match="eval_at_tokens: 1000 must be a positive multiple"):
        _config(eval_at_tokens=[1000])
    with pytest.raises(ValueError, match="warmup_tokens=999999"):
        _config(warmup_tokens=999999)
    assert TrainConfig.ADDED_FIELDS[:3] == ("warmup_tokens", "decay_shape", "eval_at_tokens")


# -- a branch continues its trunk ---------------------------------------------------------------
@pytest.mark.slow  # trains for seconds
def test_trunk_evaluates_and_checkpoints_at_its_branch_points(pydoc_bytes, tmp_path):
    seen = []
    trunk = _config(total_tokens=24 * BATCH, schedule="constant", eval_every_tokens=12 * BATCH,
                    eval_at_tokens=[5 * BATCH, 17 * BATCH])
    train(TINY, trunk, pydoc_bytes, checkpoint_dir=str(tmp_path),
          on_eval=lambda m, ckpt: seen.append((m.step, ckpt is not None)))
    assert seen == [(5, True), (12, True), (17, True), (24, True)]


@pytest.mark.slow  # trains for seconds
def test_branch_from_trunk_checkpoint_matches_the_branch_schedule_from_scratch(pydoc_bytes, tmp_path):
    """Trunk at constant LR to step 32, checkpoint at the branch point 32; the branch (40 steps,
    1-sqrt cooldown over the last 8) started there equals one run of the branch's schedule."""
    trunk = _config(total_tokens=32 * BATCH, schedule="constant", eval_every_tokens=16 * BATCH,
                    eval_at_tokens=[32 * BATCH])
    branch = _config(total_tokens=40 * BATCH, schedule="wsd", decay_fraction=0.2, decay_shape="1-sqrt",
                     eval_every_tokens=4 * BATCH)
    kept = {}

    def keep(m, ckpt):
        kept[m.step] = ckpt

    train(TINY, trunk, pydoc_bytes, checkpoint_dir=str(tmp_path / "trunk"), on_eval=keep)
    assert (tmp_path / "trunk" / CHECKPOINT_FILE).is_file() and 32 in kept
    from_trunk, scratch = [], []
    end = train(TINY, branch, pydoc_bytes, start_from=str(tmp_path / "trunk"),
                checkpoint_dir=str(tmp_path / "branch"), on_eval=lambda m, c: from_trunk.append(m))
    train(TINY, branch, pydoc_bytes, on_eval=lambda m, c: scratch.append(m))
    assert [m.step for m in from_trunk] == [36, 40]
    assert (end.tokens, end.flops) == (40 * BATCH, 40 * BATCH * TINY.flops_per_token())  # the whole path
    for got, want in zip(from_trunk, scratch[-2:]):
        assert got.step == want.step and got.lr_now == pytest.approx(want.lr_now)
        assert got.val_loss == pytest.approx(want.val_loss, rel=1e-5)
        assert got.train_loss == pytest.approx(want.train_loss, rel=1e-5)
    # The branch's own checkpoint resumes as itself (start_from is ignored then).
    again = train(
        TINY, branch, pydoc_bytes, resume_from=str(tmp_path / "branch"), start_from=str(tmp_path / "x")
    )
    assert again == end


@pytest.mark.slow  # trains a trunk
def test_branch_refuses_a_trunk_of_another_recipe_or_past_its_end(pydoc_bytes, tmp_path):
    trunk = _config(total_tokens=8 * BATCH, schedule="constant")
    train(TINY, trunk, pydoc_bytes, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"start_from=.*TrainConfig.lr=0.001 but the checkpoint has 0.003"):
        train(
            TINY,
            _config(total_tokens=12 * BATCH, schedule="wsd", lr=1e-3),
            pydoc_bytes,
            start_from=str(tmp_path),
        )
    with pytest.raises(ValueError, match="TrainConfig.warmup_tokens=0 but the checkpoint has 4096"):
        train(
            TINY,
            _config(total_tokens=12 * BATCH, schedule="wsd", warmup_tokens=0),
            pydoc_bytes,
            start_from=str(tmp_path),
        )
    with pytest.raises(ValueError, match="the checkpoint is at step 8, not before this run's last step 8"):
        train(TINY, _config(total_tokens=8 * BATCH, schedule="wsd"), pydoc_bytes, start_from=str(tmp_path))
    # A resume stays strict: the schedule is not a field a run may change on resume.
    with pytest.raises(ValueError, match="resume_from=.*TrainConfig.schedule='wsd'"):
        train(TINY, _config(total_tokens=8 * BATCH, schedule="wsd"), pydoc_bytes, resume_from=str(tmp_path))


# -- the planner ----------------------------------------------------------------------------------
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"


def _sweep(tmp_path, design: str):
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

    spec = tmp_path / "branches.yaml"
    spec.write_text(DEMO.read_text() + f"\ndesign: {design}\n")
    return load_sweep(str(spec))


def test_design_options_are_checked_with_the_field_named(tmp_path):
    from scaling_orchestrator.orchestrator.spec.sections.design import BranchesOptions
    from scaling_orchestrator.orchestrator.spec.sweep import SpecError

    assert _sweep(tmp_path, "branches").design.options == BranchesOptions()
    for design, message in (
        ("{kind: branches, cooldown_fraction: 1.5}", "design.cooldown_fraction: 1.5 must be in"),
        ("{kind: branches, decay_shape: cosine}", "design.decay_shape: 'cosine' must be one of"),
        ("{kind: branches, tokens_per_param: [20, -1]}", r"design.tokens_per_param\[1\]: -1"),
        ("{kind: branches, cooldown: 0.2}", "design.cooldown: unknown key"),
    ):
        with pytest.raises(SpecError, match=message):
            _sweep(tmp_path, design)


def test_branch_plan_lands_on_every_budget_from_one_trunk_per_size(tmp_path):
    from scaling_orchestrator.analysis.data.schema import BRANCH, HELD_OUT, TRUNK
    from scaling_orchestrator.models.training.checkpoint import BRANCH_FIELDS
    from scaling_orchestrator.orchestrator.designs import make_plan

    sweep = _sweep(tmp_path, "branches")
    plan = make_plan(sweep)
    grid = make_plan(dataclasses.replace(sweep, design=type(sweep.design)()))
    trunks = {t.trial_id: t for t in plan.trials if t.group == TRUNK}
    branches = [t for t in plan.trials if t.group != TRUNK]
    # The default `points: bracket` branches at exactly the grid's (budget, size) points.
    assert sorted((b.budget_flops, b.shape.n_layer) for b in branches) == sorted(
        (g.budget_flops, g.shape.n_layer) for g in grid.trials
    )
    assert len(trunks) == len({b.shape for b in branches}) and plan.trials[0].group == TRUNK
    for b in branches:
        trunk = trunks[b.parent_trial_id]
        steps = b.train.total_steps
        assert abs(b.flops / b.budget_flops - 1) <= 0.02
        assert b.branch_tokens == (steps - round(0.2 * steps)) * b.train.batch_tokens
        assert b.branch_tokens in trunk.train.eval_at_tokens
        assert b.group == (HELD_OUT if b.budget_flops in sweep.held_out_budgets_flops else BRANCH)
        assert (b.train.schedule, b.train.decay_shape, b.train.decay_fraction) == ("wsd", "1-sqrt", 0.2)
        differ = {k for k, v in dataclasses.asdict(b.train).items() if getattr(trunk.train, k) != v}
        assert differ <= set(BRANCH_FIELDS)
        start = b.branch_tokens // b.train.batch_tokens
        assert [lr_at(s, b.train) for s in range(start)] == [lr_at(s, trunk.train) for s in range(start)]
    for trunk in trunks.values():
        assert trunk.train.schedule == "constant" and trunk.train.total_tokens == max(
            trunk.train.eval_at_tokens
        )
    # FLOPs: the study spends trunks + cooldowns; the same points from scratch cost the grid's.
    cooldowns = sum((b.train.total_tokens - b.branch_tokens) * b.shape.flops_per_token() for b in branches)
    assert plan.total_flops == pytest.approx(sum(t.flops for t in trunks.values()) + cooldowns)
    data = json.loads(plan.to_json())
    assert data["grid_equivalent_flops"] == pytest.approx(grid.total_flops)
    assert (
        data["total_flops"] == pytest.approx(plan.total_flops) and plan.total_flops < 0.65 * grid.total_flops
    )
    assert "the same points as independent runs" in plan.render()
    assert [t.trial_id for t in make_plan(sweep).trials] == [t.trial_id for t in plan.trials]  # stable ids


def test_extra_branch_points_and_points_below(tmp_path):
    from scaling_orchestrator.orchestrator.designs import make_plan

    bracket = make_plan(_sweep(tmp_path, "branches"))
    plan = make_plan(_sweep(tmp_path, "{kind: branches, points: below, tokens_per_param: [5, 80]}"))
    by_size = {}
    for t in plan.trials:
        if t.parent_trial_id:
            by_size.setdefault(t.size_label, []).append(t)
    # d3's trunk passes 5 tokens/param (700k tokens, 9.2e11 FLOPs): a point of its own budget.
    d3 = {round(t.train.total_tokens / t.shape.param_counts()["total"], 1): t for t in by_size["d3"]}
    assert d3[5.0].budget_flops == pytest.approx(d3[5.0].flops)
    # `points: below` adds d5 at the budgets below its bracket (a cooldown each, no longer trunk).
    assert len(by_size["d5"]) > sum(t.size_label == "d5" and bool(t.parent_trial_id) for t in bracket.trials)
    # An extra point above the largest fitting budget would leak into the back-test: dropped.
    assert any("tokens_per_param 80" in d.reason and "back-test" in d.reason for d in plan.dropped)
    assert all(t.flops <= 2.4e12 * 1.02 for t in plan.trials if t.parent_trial_id and t.group != "held_out")


# -- the queue ------------------------------------------------------------------------------------
def _queue_study(tmp_path):
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.designs.branches import make_queue
    from scaling_orchestrator.orchestrator.store.results import Store

    plan = make_plan(_sweep(tmp_path, "branches"))
    store = Store(str(tmp_path / "results"))
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    (tmp_path / "ckpt" / CHECKPOINT_FILE).write_bytes(b"weights")
    return plan, store, make_queue


def test_queue_runs_trunks_first_and_each_branch_once_its_checkpoint_is_kept(tmp_path):
    from scaling_orchestrator.orchestrator.designs.queue import FINISHED

    plan, store, make_queue = _queue_study(tmp_path)
    queue = make_queue(plan, list(plan.trials), store)
    trunks = [t for t in plan.trials if t.group == "trunk"]
    taken = [queue.take(store) for _ in trunks]
    assert taken == sorted(trunks, key=lambda t: -t.flops)
    assert queue.take(store) is None  # every branch waits for a checkpoint
    branch = next(t for t in plan.trials if t.parent_trial_id == taken[0].trial_id)
    store.keep_checkpoint(branch.parent_trial_id, str(tmp_path / "ckpt"), branch.branch_tokens)
    assert queue.take(store) == branch and queue.take(store) is None
    # The trunk diverges: its branches still waiting fail, with the reason; the study can end.
    queue.on_complete(taken[0], {"status": "diverged", "step": 40}, store, False)
    waiting = [t for t in plan.trials if t.parent_trial_id == taken[0].trial_id and t != branch]
    for t in waiting:
        assert store.read_trial(t.trial_id)[-1]["status"] == "failed"
        assert store.read_meta(t.trial_id)["error"].startswith(
            f"trunk {taken[0].trial_id} diverged at step 40"
        )
    for trunk in taken[1:]:
        queue.on_complete(trunk, None, store, True)  # failed for good: every branch of it fails
    for spec in [branch, *taken]:
        queue.on_complete(spec, {"status": "ok"}, store, False)
    assert queue.take(store) == FINISHED


def test_requeue_skips_final_trunks_and_brings_waiting_branches_of_a_rerun_trunk(tmp_path):
    from scaling_orchestrator.orchestrator.store.results import measurement_row

    plan, store, make_queue = _queue_study(tmp_path)
    trunk = next(t for t in plan.trials if t.group == "trunk")
    mine = sorted(
        (t for t in plan.trials if t.parent_trial_id == trunk.trial_id), key=lambda t: t.branch_tokens
    )
    # A re-run after a lost node hands the queue the trunk alone: its not-final branches join it.
    queue = make_queue(plan, [trunk], store)
    assert {t.trial_id for t in queue.planned()} == {trunk.trial_id, *(t.trial_id for t in mine)}
    # The trunk finished earlier with one branch point kept: that branch runs, the others fail.
    store.keep_checkpoint(trunk.trial_id, str(tmp_path / "ckpt"), mine[0].branch_tokens)
    last = {**measurement_row(trunk, None), "status": "ok", "final": True, "step": 9}
    store.write_row(last)
    queue = make_queue(plan, mine, store)
    assert queue.take(store) == mine[0]
    assert all(
        store.read_meta(t.trial_id)["error"].endswith(f"at {t.branch_tokens} tokens") for t in mine[1:]
    )


def test_embedded_branches_spec_is_the_example_and_asks_the_demo_question():
    from scaling_orchestrator.cli import demo
    from scaling_orchestrator.orchestrator.designs import make_plan

    example = Path(__file__).resolve().parents[1] / "examples" / "branches.yaml"
    assert demo.demo_spec_path("branches").read_text() == example.read_text()
    plan, grid = demo.build_plan("unused", design="branches"), demo.build_plan("unused")
    assert plan.sweep.design.kind == "branches" and grid.sweep.design.kind == "grid"
    for field in ("budgets_flops", "held_out_budgets_flops", "model", "prior", "data"):
        assert getattr(plan.sweep, field) == getattr(grid.sweep, field)
    assert plan.sweep.held_out_budgets_flops and any(t.group == "held_out" for t in plan.trials)
    assert plan.total_flops < 0.65 * make_plan(grid.sweep).total_flops


def test_progress_counts_a_trunks_share_once(tmp_path):
    from scaling_orchestrator.analysis.data.schema import TRUNK
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.store.status import Tally

    plan = make_plan(_sweep(tmp_path, "branches"))
    branch = next(t for t in plan.trials if t.group != TRUNK)
    assert branch.own_flops == pytest.approx(
        branch.flops - branch.branch_tokens * branch.shape.flops_per_token()
    )
    tally = Tally(plan.trials, set(), start=0.0)
    tally.started(branch.trial_id)
    tally.reported(branch.trial_id, branch.flops - branch.own_flops / 2)  # halfway through its cooldown
    assert tally.flops_now[branch.trial_id] == pytest.approx(branch.own_flops / 2)
    for t in plan.trials:
        tally.finished(t.trial_id)
    # what the study spends (trunks + cooldowns), not the grid-equivalent sum of whole paths
    assert f"{plan.total_flops:.2e}/{plan.total_flops:.2e} FLOPs (100%)" in tally.line(now=1.0)
    assert plan.total_flops < sum(t.flops for t in plan.trials)
