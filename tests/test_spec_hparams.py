"""The spec's hparams section and train.lr: {from_fit}: one-line errors, token rounding, the plan."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.references import lr_note, resolve
from scaling_orchestrator.orchestrator.spec.sections.hparams import HparamSpec
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, load_sweep, parse_sweep

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


def write_law(tmp_path, **law) -> str:
    path = tmp_path / "fit.json"
    path.write_text(
        json.dumps(
            {"lr_law": {"fittable": True, "coefficient": 0.3, "exponent": -0.5, "n_range": [3e4, 2e5], **law}}
        )
    )
    return str(path)


def test_lr_from_fit_sets_each_size_and_warns_outside_the_fitted_range(tmp_path):
    spec = {k: v for k, v in base().items() if k != "hparams"}
    spec["train"] = {"batch_tokens": 2048, "lr": {"from_fit": write_law(tmp_path)}}
    plan = make_plan(parse_sweep(spec))
    for t in plan.trials:
        assert t.train.lr == pytest.approx(0.3 * t.shape.param_counts()["total"] ** -0.5, rel=1e-12)
    d2 = next(t for t in plan.trials if t.shape.n_layer == 2)
    assert d2.train.lr == pytest.approx(1.2016e-3, rel=1e-4)  # 0.3 / sqrt(62,336)
    sizes = sorted({t.shape.param_counts()["total"] for t in plan.trials})
    outside = [n for n in sizes if not 3e4 <= n <= 2e5]
    read, *extrapolated = plan.notes  # first what the plan read, then each size outside the law
    assert read.startswith("train.lr.from_fit: lr = 0.3 N^-0.5 (total params), the lr law in ")
    assert read.endswith("fit.json, fitted on 30k..200k params")
    assert outside and len(extrapolated) == len(outside)
    assert all("is an extrapolation" in n and "fit.json" in n for n in extrapolated)
    text = plan.render()
    header = text.splitlines()[3].split()
    assert header[header.index("steps") + 1] == "lr" and f"{d2.train.lr:.3g}" in text
    assert sum(line.startswith("note: lr:") for line in text.splitlines()) == len(outside)


def test_lr_from_fit_in_non_embedding_params_and_no_column_for_one_lr(tmp_path):
    spec = {k: v for k, v in base().items() if k != "hparams"}
    spec["train"] = {
        "batch_tokens": 2048,
        "lr": {"from_fit": write_law(tmp_path, n_range=[1e3, 1e7]), "params": "non_embedding"},
    }
    plan = make_plan(parse_sweep(spec))
    d2 = next(t for t in plan.trials if t.shape.n_layer == 2)
    assert d2.train.lr == pytest.approx(0.3 / math.sqrt(25472))
    assert [n.split(", the lr law in")[0] for n in plan.notes] == [
        "train.lr.from_fit: lr = 0.3 N^-0.5 (non_embedding params)"
    ]  # what was read, and no size outside the law's range
    assert (
        "  lr  " not in make_plan(parse_sweep({k: v for k, v in base().items() if k != "hparams"})).render()
    )


def test_example_spec_parses_and_plans():
    plan = make_plan(load_sweep(ROOT / "examples" / "hparam-search.yaml"))
    h = plan.sweep.hparams
    assert h.scheduler == "asha" and h.search == "random" and [s.label for s in h.sizes] == ["d1", "d2", "d3"]
    assert plan.trials and not plan.notes
    assert plan.to_dict()["hparams"]["flops_upper_bound"] < 1e14  # minutes on a laptop, not hours


def write_search(
    tmp_path, d_model: int = 32, lrs=(1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2), best: float = 4e-3
) -> str:
    """A results folder of one searched size (label "d2", d_model wide): loss a bowl in log2 lr."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "search"
    folder.mkdir()
    rows = [
        {
            "trial_id": f"t{i}",
            "kind": "hparam",
            "size_label": "d2",
            "n_layer": 2,
            "d_model": d_model,
            "params": 40000,
            "lr": lr,
            "batch_tokens": 2048,
            "tokens": 1e6,
            "budget_flops": 1e12,
            "val_loss": 4.0 + 0.05 * math.log2(lr / best) ** 2,
            "final": True,
            "status": "ok",
        }
        for i, lr in enumerate(lrs)
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "rows.parquet")
    return str(folder)


def _mup_spec(lr=None, **model) -> dict:
    spec = {k: v for k, v in base().items() if k != "hparams"}
    spec["model"] = {
        "depth": {"min": 2, "max": 8},
        "aspect_ratio": 16,
        "head_dim": 16,
        "seq_len": 128,
        "parametrization": "mup",
        **model,
    }
    if lr is not None:
        spec["train"] = {**spec["train"], "lr": lr}
    return spec


def test_lr_from_search_feeds_every_size_under_mup(tmp_path):
    folder = write_search(tmp_path)
    sweep = parse_sweep(_mup_spec({"from_search": folder}))
    assert sweep.train.lr_law is None and sweep.train.lr_source.path == folder  # parsing reads nothing
    plan = make_plan(sweep)  # resolve reads the search, then the design plans
    lrs = {t.train.lr for t in plan.trials}
    assert len(lrs) == 1 and lrs.pop() == pytest.approx(4e-3, rel=1e-9)  # the bowl's vertex, every size
    assert len({t.shape.d_model for t in plan.trials}) >= 3
    note = lr_note(plan.sweep.train)
    assert (
        note.startswith("lr: 0.004 at every size, the best lr of the search in") and "d2 (d_model 32" in note
    )
    assert [n for n in plan.notes if n.startswith("lr:")] == [note]  # the source; no size extrapolated
    assert lr_note(parse_sweep(_mup_spec()).train) == ""


def test_a_spec_takes_its_lr_from_a_search(tmp_path):
    spec = _mup_spec({"from_search": write_search(tmp_path)})
    plan = make_plan(parse_sweep(spec))
    assert [t.train.lr for t in plan.trials] == [pytest.approx(4e-3, rel=1e-9)] * len(plan.trials)
    assert "the best lr of the search in" in plan.render()
    spec["model"]["parametrization"] = "standard"
    with pytest.raises(
        SpecError, match="train.lr.from_search: .* must be used with model.parametrization: mup"
    ):
        parse_sweep(spec)


@pytest.mark.parametrize(
    "case, kw, model, expected",
    [
        ("standard model", {}, {"parametrization": "standard"},
         "must be used with model.parametrization: mup"),
        ("other width", {"d_model": 64}, {}, "its smallest size d2 is [64] wide, model.base_d_model is 32"),
        (
            "best at the edge",
            {"best": 1.6e-2},
            {},
            "must be a search whose best lr at d2 lies inside its lr grid",
        ),
        ("no folder", None, {}, "must be a readable results folder"),
    ],
)
def test_bad_lr_from_search_names_the_field(tmp_path, case, kw, model, expected):
    path = str(tmp_path / "none") if kw is None else write_search(tmp_path, **kw)
    with pytest.raises(SpecError) as info:  # the model at parse, the folder when resolve reads it
        resolve(parse_sweep(_mup_spec({"from_search": path}, **model), "bad.yaml"))
    message = str(info.value)
    assert message.startswith("bad.yaml: train.lr.from_search: ") and expected in message


def test_mup_hparam_sizes_on_a_width_dial():
    spec = base(sizes=[48, 64])
    spec["model"] = {
        "width": {"min": 32, "max": 128},
        "n_layer": 2,
        "head_dim": 16,
        "seq_len": 128,
        "parametrization": "mup",
    }
    sizes = parse_sweep(spec).hparams.sizes
    assert [(s.label, s.shape.base_d_model, s.shape.width_multiplier) for s in sizes] == [
        ("L2xD48", 32, 1.5),
        ("L2xD64", 32, 2.0),
    ]
    spec["hparams"]["sizes"] = [40]
    with pytest.raises(
        SpecError,
        match=r"hparams.sizes\[0\]: 40 must be a d_model of the width dial: a multiple "
        r"of model.head_dim \(16\)",
    ):
        parse_sweep(spec)
