"""model.block and llama's options, train.keep_weights: parsed, refused in one line, planned with
exact counts; the plan says how much the study keeps."""

from __future__ import annotations

import copy

import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, parse_sweep


def base(**model) -> dict:
    return {
        "name": "t",
        "budgets_flops": [2e11, 5e11],
        "sizes_per_budget": 3,
        "model": {"depth": {"min": 1, "max": 6}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128, **model},
        "data": {"corpus": "pydoc", "tokenizer": "bpe", "vocab_size": 1024},
        "train": {"batch_tokens": 2048},
    }


def test_llama_dial_plans_exact_counts_and_steps():
    sweep = parse_sweep(base(block="llama", n_kv_heads=1, qk_norm=True, ffn_multiple_of=16, rope_theta=5e5))
    shape = sweep.model.shapes[3]  # depth 4: 64 wide, 4 heads of 16
    assert (shape.block, shape.kv_heads, shape.qk_norm, shape.rope_theta) == ("llama", 1, True, 5e5)
    assert shape.d_ff == 176  # 8/3 x 64 = 170.7, up to a multiple of 16
    assert not shape.tied_embeddings and sweep.model.label(shape) == "d4"
    plan = make_plan(sweep)
    for trial in plan.trials:
        assert trial.shape.block == "llama"
        assert abs(trial.flops / trial.budget_flops - 1) < 0.02  # whole steps of the exact llama count
    data = plan.to_dict()
    assert data["weights_bytes"] == sum(4 * t.shape.param_counts()["total"] for t in plan.trials)
    assert "weights kept:" in plan.render()
    gpt2 = make_plan(parse_sweep(base()))
    assert {t.trial_id for t in gpt2.trials}.isdisjoint({t.trial_id for t in plan.trials})


def test_listed_shapes_carry_the_block_through_a_next_round_spec():
    """scaling next writes the sizes as shapes: the block, its options and untied heads carry over."""
    from scaling_orchestrator.orchestrator.designs.next_spec import model_section

    plan = make_plan(parse_sweep(base(block="llama", qk_norm=True)))
    model = model_section(plan.trials[0], plan.trials)
    assert model["block"] == "llama" and model["qk_norm"] is True
    again = make_plan(parse_sweep({**base(), "model": model}))
    assert {t.trial_id for t in again.trials} == {t.trial_id for t in plan.trials}
    model["shapes"][0]["tied_embeddings"] = "yes"
    with pytest.raises(SpecError, match="model.shapes.0..tied_embeddings: 'yes' must be true or false"):
        parse_sweep({**base(), "model": model})


def test_keep_weights_none_keeps_the_trial_ids():
    kept = make_plan(parse_sweep(base()))
    raw = base()
    raw["train"]["keep_weights"] = "none"
    none = make_plan(parse_sweep(raw))
    assert [t.trial_id for t in none.trials] == [t.trial_id for t in kept.trials]
    assert none.to_dict()["weights_bytes"] == 0 and kept.to_dict()["weights_bytes"] > 0


@pytest.mark.parametrize("model, train, expected", [
    ({"block": "bert"}, {}, "model.block: 'bert' must be one of gpt2, llama"),
    ({"qk_norm": True}, {}, "model.qk_norm: True must be absent unless model.block is llama"),
    ({"block": "llama", "qk_norm": "yes"}, {}, "model.qk_norm: 'yes' must be true or false"),
    ({"block": "llama", "n_kv_heads": 3}, {}, "model.n_kv_heads: 3 must be a divisor of n_head=1"),
    ({"block": "llama", "rope_theta": 1}, {}, "model.rope_theta: 1 must be a number > 1"),
    ({"block": "llama", "ffn_multiple_of": 0}, {}, "model.ffn_multiple_of: 0 must be a whole number >= 1"),
    ({}, {"keep_weights": "all"}, "train.keep_weights: 'all' must be one of final, none"),
])
def test_bad_block_fields_are_one_line_naming_the_field(model, train, expected):
    raw = copy.deepcopy(base(**model))
    raw["train"].update(train)
    with pytest.raises(SpecError) as info:
        parse_sweep(raw, "bad.yaml")
    assert "\n" not in str(info.value) and expected in str(info.value)
