"""The spec's hparams section and train.lr: {from_fit}: one-line errors, token rounding, the plan."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.references import resolve
from scaling_orchestrator.orchestrator.spec.sections.hparams import HparamSpec
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, parse_sweep

ROOT = Path(__file__).resolve().parents[1]


def base(**hparams) -> dict:
    """A grid spec (as tests/test_spec.py) with a search at depths 1 and 2 of its dial."""
    search = {"sizes": [1, 2], "space": {"lr": {"loguniform": ["1e-4", 3e-2]},
                                         "batch_tokens": {"choice": [1024, 2048, 4096]}},
              "num_samples": 6, "scheduler": {"type": "asha", "grace_period_tokens": 65536},
              "tokens_per_param": 20}
    search.update(hparams)
    search = {k: v for k, v in search.items() if v is not None}  # None: leave the key out
    return {"name": "t", "budgets_flops": [2e11, 5e11, 1.25e12], "sizes_per_budget": 5,
            "model": {"depth": {"min": 1, "max": 8}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128},
            "data": {"corpus": "pydoc", "tokenizer": "bpe", "vocab_size": 1024},
            "train": {"batch_tokens": 2048}, "hparams": search}


def without(spec: dict, *keys) -> dict:
    spec = copy.deepcopy(spec)
    for key in keys:
        del spec["hparams"][key]
    return spec


SHAPES = {"depth": None, "aspect_ratio": None, "head_dim": None,
          "shapes": [{"n_layer": 1, "d_model": 32, "n_head": 2}, {"n_layer": 2, "d_model": 64, "n_head": 4},
                     {"n_layer": 3, "d_model": 96, "n_head": 4}]}
EXPLICIT = {**base(), "model": {"shapes": SHAPES["shapes"], "seq_len": 128}, "sizes_per_budget": 3}

BAD = [
    ("unknown key", base(samples=4), "hparams.samples: unknown key; did you mean 'num_samples'?"),
    (
        "unknown field",
        base(space={"learning_rate": {"loguniform": [1e-4, 1e-2]}}),
        "hparams.space.learning_rate: unknown key; allowed: lr, batch_tokens, min_lr_ratio",
    ),
    (
        "unknown primitive",
        base(space={"lr": {"logunif": [1e-4, 1e-2]}}),
        "hparams.space.lr: 'logunif' must be one of loguniform, uniform, randint, choice, grid",
    ),
    (
        "primitive not a mapping",
        base(space={"lr": [1e-4, 1e-2]}),
        "hparams.space.lr: [0.0001, 0.01] must be one of",
    ),
    (
        "lr bound zero",
        base(space={"lr": {"loguniform": [0, 1e-2]}}),
        "hparams.space.lr.loguniform[0]: 0 must be a valid train.lr",
    ),
    (
        "low above high",
        base(space={"lr": {"loguniform": [1e-2, 1e-3]}}),
        "hparams.space.lr.loguniform: [0.01, 0.001] must be [low, high] with low < high",
    ),
    (
        "range of three",
        base(space={"lr": {"uniform": [1e-3, 2e-3, 3e-3]}}),
        "hparams.space.lr.uniform: [0.001, 0.002, 0.003] must be [low, high]",
    ),
    (
        "batch not a multiple",
        base(space={"batch_tokens": {"choice": [1024, 1000]}}),
        "hparams.space.batch_tokens.choice[1]: 1000 must be a positive multiple of model.seq_len (128)",
    ),
    (
        "batch range",
        base(space={"batch_tokens": {"loguniform": [1024, 4096]}}),
        "hparams.space.batch_tokens.loguniform: [1024, 4096] must be choice or grid values",
    ),
    ("randint lr", base(space={"lr": {"randint": [1, 3]}}), "must be loguniform, uniform, choice or grid"),
    (
        "bad schedule",
        base(space={"schedule": {"choice": ["cosine", "linear"]}}),
        "hparams.space.schedule.choice[1]: 'linear' must be a valid train.schedule",
    ),
    (
        "beta2 of one",
        base(space={"beta2": {"uniform": [0.9, 1.0]}}),
        "hparams.space.beta2.uniform[1]: 1 must be a valid train.beta2",
    ),
    (
        "repeated choice",
        base(space={"lr": {"grid": [1e-3, 1e-3]}}),
        "hparams.space.lr.grid: [0.001, 0.001] must be without repeats",
    ),
    ("bad search", base(search="bayes"), "hparams.search: 'bayes' must be one of random, grid, optuna"),
    (
        "grid over a range",
        base(search="grid", num_samples=1),
        "hparams.space.lr.loguniform: ['1e-4', 0.03] must be choice or grid values for search: grid",
    ),
    (
        "grid repeated",
        base(search="grid", num_samples=2, space={"lr": {"grid": [1e-3, 3e-3]}}),
        "hparams.num_samples: 2 must be 1 for search: grid",
    ),
    ("optuna grid", base(search="optuna", space={"lr": {"grid": [1e-3, 3e-3]}}), "Optuna has no grid"),
    (
        "bad scheduler",
        base(scheduler="hyperband"),
        "hparams.scheduler.type: 'hyperband' must be one of fifo, asha",
    ),
    (
        "fifo with grace",
        base(scheduler={"type": "fifo", "grace_period_tokens": 10}),
        "hparams.scheduler.type: 'fifo' must be asha",
    ),
    (
        "reduction factor",
        base(scheduler={"type": "asha", "reduction_factor": 1}),
        "hparams.scheduler.reduction_factor: 1 must be a number > 1",
    ),
    (
        "grace too long",
        base(scheduler={"type": "asha", "grace_period_tokens": "1e9"}),
        "hparams.scheduler.grace_period_tokens: 1000000000 must be "
        "below the tokens of the shortest trial (434176)",
    ),
    (
        "two token rules",
        base(tokens_per_trial=1e6),
        "must be given exactly one of tokens_per_trial, tokens_per_param",
    ),
    ("no token rule", without(base(), "tokens_per_param"), "hparams: {} must be given exactly one of"),
    (
        "too few tokens",
        base(tokens_per_param=None, tokens_per_trial=40000),
        "hparams.tokens_per_trial: 40000 must be larger: size d1 (40960 tokens) gets 10 steps of 4096 tokens "
        "< train.min_steps 25",
    ),
    ("depth zero", base(sizes=[0, 2]), "hparams.sizes[0]: 0 must be a whole number >= 1"),
    (
        "depth twice",
        base(sizes=[2, 2]),
        "hparams.sizes[1]: 2 must be different from the other sizes (d2 twice)",
    ),
    ("no sizes", base(sizes=[]), "hparams.sizes: [] must be a non-empty list"),
    ("missing space", without(base(), "space"), "hparams.space: missing"),
    ("no samples", base(num_samples=0), "hparams.num_samples: 0 must be a whole number >= 1"),
    ("depth without a dial", EXPLICIT, "hparams.sizes[0]: 1 must be a shape {n_layer, d_model, n_head}"),
    (
        "bad shape",
        base(sizes=[{"n_layer": 2, "d_model": 100, "n_head": 3}]),
        "hparams.sizes[0].n_head: 3 must be a divisor of d_model (100)",
    ),
    (
        "lr fit missing",
        {**base(), "train": {"batch_tokens": 2048, "lr": {"from_fit": "no/such/fit.json"}}},
        "train.lr.from_fit: 'no/such/fit.json' must be a `scaling fit --json` file with a fitted lr_law",
    ),
    (
        "lr fit key",
        {**base(), "train": {"batch_tokens": 2048, "lr": {"form_fit": "x.json"}}},
        "train.lr.form_fit: unknown key; did you mean 'from_fit'?",
    ),
    (
        "held out alone",
        {**without(base()), "budgets_flops": None, "held_out_budgets_flops": [1e12]},
        "held_out_budgets_flops: [1000000000000.0] must be empty when there are no budgets_flops",
    ),
]


def _clean(spec: dict) -> dict:
    return {k: v for k, v in copy.deepcopy(spec).items() if v is not None}


@pytest.mark.parametrize("case,spec,expected", BAD, ids=[c[0] for c in BAD])
def test_bad_hparams_are_one_line_naming_the_field(case, spec, expected):
    with pytest.raises(SpecError) as info:  # at parse, or where resolve reads a file it names
        resolve(parse_sweep(_clean(spec), "bad.yaml"))
    message = str(info.value)
    assert "\n" not in message and message.startswith("bad.yaml: ")
    assert expected in message


def test_optuna_missing_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a)
    )
    with pytest.raises(
        SpecError,
        match=r"hparams.search: 'optuna' must be random or grid here: optuna is "
        r"not installed \(pip install 'scaling-orchestrator\[optuna\]'\)",
    ):
        parse_sweep(base(search="optuna"))


def test_token_counts_are_whole_multiples_of_every_batch():
    h = parse_sweep(base()).hparams
    assert isinstance(h, HparamSpec) and [s.label for s in h.sizes] == ["d1", "d2"]
    d2 = h.sizes[1]
    # 20 x 62,336 params = 1,246,720 tokens; lcm(2048, 1024, 4096) = 4096 -> 304 x 4096
    assert d2.shape.param_counts()["total"] == 62336 and d2.total_tokens == 304 * 4096 == 1245184
    assert d2.eval_every_tokens == 38 * 4096  # evals_per_trial 8: 1,245,184 / 8 = 155,648 = 38 x 4096
    assert h.scheduler == "asha" and h.grace_period_tokens == 65536 and h.reduction_factor == 3.0
    assert h.search == "random" and h.num_samples == 6 and h.trials_per_size == 6 and h.seed == 0
    fixed = parse_sweep(base(tokens_per_param=None, tokens_per_trial="1e6", sizes=[1])).hparams
    assert fixed.sizes[0].total_tokens == 244 * 4096 == 999424  # round(1e6 / 4096) = 244
    d3 = parse_sweep(base(sizes=[3])).hparams.sizes[0]
    # 20 x 140,208 params -> 685 x 4096 tokens; 685 / 8 = 85.6, rounded down as for the grid's
    # trials (scaling_orchestrator.models.training.config.eval_interval_tokens) so that every trial gets >= 8
    # evaluations
    assert d3.total_tokens == 685 * 4096 and d3.eval_every_tokens == 85 * 4096


def test_grid_keys_multiply_the_samples_and_grid_search_crosses_all():
    space = {"lr": {"grid": [1e-3, 3e-3, 1e-2]}, "warmup_fraction": {"uniform": [0.0, 0.1]}}
    assert parse_sweep(base(space=space, num_samples=4)).hparams.trials_per_size == 12
    grid = {"lr": {"choice": [1e-3, 3e-3]}, "seed": {"grid": [0, 1, 2]}}
    h = parse_sweep(base(space=grid, search="grid", num_samples=None)).hparams
    assert h.num_samples == 1 and h.trials_per_size == 6


def test_a_search_alone_needs_no_budgets_and_plans_no_grid():
    spec = {
        k: v
        for k, v in base(sizes=[{"n_layer": 2, "d_model": 64, "n_head": 4}, 3]).items()
        if k not in ("budgets_flops", "sizes_per_budget")
    }
    plan = make_plan(parse_sweep(spec))
    assert plan.sweep.budgets_flops == () and plan.trials == ()
    assert [t.size_label for t in plan.hparam_trials] == ["d3", "L2xD64"]  # by params: 140k, 172k
    for t in plan.hparam_trials:
        assert t.kind == "hparam" and t.group == ""
        assert t.train.total_tokens % 4096 == 0 and t.train.eval_every_tokens % 4096 == 0
        assert t.budget_flops == t.train.total_tokens * t.shape.flops_per_token()
    text = plan.render()
    assert "budget" not in text.split("hparam search")[0]  # no grid table
    assert "space: lr loguniform[0.0001, 0.03]; batch_tokens choice[1024, 2048, 4096]" in text
    assert "hparams: 12 trials at 2 sizes, at most" in text


def test_plan_prints_the_search_with_its_flops_upper_bound():
    plan = make_plan(parse_sweep(base()))
    assert len(plan.trials) == 15 and [t.size_label for t in plan.hparam_trials] == ["d1", "d2"]
    d2 = plan.hparam_trials[1]
    flops = 1245184 * d2.shape.flops_per_token()  # 1,245,184 tokens x 643,584 FLOPs/token
    assert flops == pytest.approx(8.0138e11, rel=1e-4)
    data = plan.to_dict()["hparams"]
    assert data["sizes"][1]["flops_upper_bound"] == pytest.approx(6 * flops)
    assert data["n_trials"] == 12 and data["space"][1] == {
        "name": "batch_tokens",
        "primitive": "choice",
        "values": [1024, 2048, 4096],
    }
    text = plan.render()
    assert (
        "hparam search (kind 'hparam', one size_label per size): random, 6 samples, 6 trials per size" in text
    )
    assert "asha (grace 65,536 tokens, reduction factor 3)" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("d2 "))
    assert d2.trial_id[:8] in line and "searched" in line and f"{6 * flops:.3e}" in line
    json.loads(plan.to_json())


def test_base_trial_ids_are_stable_and_differ_by_size():
    ids = [t.trial_id for t in make_plan(parse_sweep(base())).hparam_trials]
    assert ids == [t.trial_id for t in make_plan(parse_sweep(base())).hparam_trials] and len(set(ids)) == 2
    other_seed = [t.trial_id for t in make_plan(parse_sweep({**base(), "seeds": [3]})).hparam_trials]
    assert not set(ids) & set(other_seed)
