"""ModelShape: exact parameter counts (against the built module and GPT-2 small) and exact
training FLOPs (Chinchilla Appendix F, checked by hand and against Table A4)."""

import csv
import dataclasses
import math
import re

import pytest
import torch

from scaling_orchestrator.models.gpt import GPT
from scaling_orchestrator.models.shape import ModelShape, chinchilla_table_a4_ratio

SHAPES = [
    ModelShape(n_layer=1, d_model=8, n_head=1, vocab_size=11, seq_len=3),
    ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=96, vocab_size=256, seq_len=32, tied_embeddings=False),
    ModelShape(n_layer=3, d_model=48, n_head=6, vocab_size=1000, seq_len=17),
    ModelShape(
        n_layer=4, d_model=128, n_head=8, d_ff=200, vocab_size=2048, seq_len=128, tied_embeddings=False
    ),
    ModelShape.from_depth(3, vocab_size=512, seq_len=64),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_param_counts_equal_the_built_module(shape):
    model = GPT(shape)
    counts = shape.param_counts()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    embedding = model.token_embedding.weight.numel() + model.position_embedding.weight.numel()
    assert counts["embedding"] == embedding
    head = 0 if shape.tied_embeddings else model.lm_head.weight.numel()
    assert counts.get("head", 0) == head
    assert ("head" in counts) == (not shape.tied_embeddings)
    assert counts["non_embedding"] == counts["total"] - embedding - head


def test_gpt2_small_param_count():
    # GPT-2 small: wte 50257*768 = 38,597,376; wpe 1024*768 = 786,432; 12 blocks of 7,087,872
    # (QKV 1,771,776 + proj 590,592 + fc 2,362,368 + proj 2,360,064 + 2 LayerNorms 3,072);
    # final LayerNorm 1,536. Total 124,439,808 (nanoGPT prints 123.65M = total - wpe).
    shape = ModelShape(n_layer=12, d_model=768, n_head=12, vocab_size=50257, seq_len=1024)
    counts = shape.param_counts()
    assert counts == {"total": 124_439_808, "embedding": 39_383_808, "non_embedding": 85_056_000}
    with torch.device("meta"):
        assert sum(p.numel() for p in GPT(shape).parameters()) == 124_439_808


def test_flops_hand_computed_small_case():
    # n_layer 2, d 8, 2 heads (key_size 4, key_size*heads 8), d_ff 32, vocab 16, seq 4:
    #   embeddings     2*4*16*8           = 1,024
    #   per layer: QKV 2*3*4*8*8          = 1,536
    #              logits 2*4*4*8         =   256
    #              softmax 3*2*4*4        =    96
    #              x values 2*4*4*8       =   256
    #              out proj 2*4*8*8       =   512
    #              FFN 2*4*(8*32 + 8*32)  = 4,096   -> 6,752 per layer, 13,504 for 2
    #   final logits   2*4*8*16           = 1,024
    #   forward 15,552 per sequence; training 3 x 15,552 = 46,656; / 4 tokens = 11,664
    shape = ModelShape(n_layer=2, d_model=8, n_head=2, vocab_size=16, seq_len=4)
    assert shape.forward_flops_per_sequence() == 15_552
    assert shape.flops_per_token() == 11_664
    # params: per block attention 8*24+24 + 8*8+8 = 288, MLP 8*32+32 + 32*8+8 = 552,
    # LayerNorms 2*16 = 32 -> 872; 2 blocks + final LayerNorm 16 = 1,760 non-embedding.
    assert shape.param_counts() == {"total": 1_920, "embedding": 160, "non_embedding": 1_760}
    assert shape.flops_per_token_6n() == 6 * 1_760


def test_chinchilla_table_a4_ratios(reference_data):
    path = reference_data("chinchilla_paper_tables", "tableA4_flop_ratio.csv")
    rows = list(csv.DictReader(path.open()))
    assert [float(r["flop_ratio_ours_over_6ND"]) for r in rows] == [1.03, 1.10, 1.08, 1.04, 1.03, 0.99]
    for row in rows:
        d_model, n_head = int(row["d_model"]), int(row["num_heads"])
        assert d_model // n_head == int(row["kq_size"])
        shape = ModelShape(
            n_layer=int(row["num_layers"]),
            d_model=d_model,
            n_head=n_head,
            d_ff=int(row["ffw_size"]),
            vocab_size=32_000,
            seq_len=2_048,
        )
        ratio = chinchilla_table_a4_ratio(shape)
        assert abs(round(ratio, 2) - float(row["flop_ratio_ours_over_6ND"])) <= 0.005, (row, ratio)
        # The default count keeps embeddings and logits, so it is larger than the table's.
        assert shape.flops_per_token() > ratio * 6 * shape.param_counts()["non_embedding"]


def test_from_depth_is_one_dial():
    shape = ModelShape.from_depth(4, vocab_size=2048, seq_len=128)
    assert (shape.n_layer, shape.d_model, shape.n_head, shape.d_ff) == (4, 128, 4, 512)
    # 3 * 20 = 60 rounds up to the next multiple of head_dim 32: 64 wide, 2 heads.
    odd = ModelShape.from_depth(3, vocab_size=256, seq_len=64, aspect_ratio=20, head_dim=32)
    assert (odd.n_layer, odd.d_model, odd.n_head) == (3, 64, 2)


def test_round_trips_through_plain_dict():
    shape = ModelShape(n_layer=2, d_model=64, n_head=4)
    assert shape.d_ff == 256
    assert ModelShape(**dataclasses.asdict(shape)) == shape


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(n_layer=2, d_model=66, n_head=4), "d_model=66"),
        (dict(n_layer=0, d_model=64, n_head=4), "n_layer=0"),
        (dict(n_layer=2, d_model=64, n_head=-4), "n_head=-4"),
        (dict(n_layer=2, d_model=64, n_head=4, d_ff=-1), "d_ff=-1"),
        (dict(n_layer=2, d_model=64, n_head=4, vocab_size=0), "vocab_size=0"),
        (dict(n_layer=2, d_model=64, n_head=4, seq_len=2.5), "seq_len=2.5"),
    ],
)
def test_bad_shapes_name_the_field(fields, named):
    with pytest.raises(ValueError, match=named):
        ModelShape(**fields)


# The three axes at their extremes: deep and narrow, wide and shallow, long context, and mup.
AXES = [
    ModelShape(n_layer=12, d_model=32, n_head=4, vocab_size=300, seq_len=64),  # aspect 2.7
    ModelShape(n_layer=1, d_model=256, n_head=8, vocab_size=300, seq_len=64),  # aspect 256
    ModelShape(n_layer=2, d_model=64, n_head=4, vocab_size=300, seq_len=1024),  # long context
    ModelShape(
        n_layer=3,
        d_model=96,
        n_head=2,
        vocab_size=300,
        seq_len=48,
        tied_embeddings=False,
        parametrization="mup",
        base_d_model=32,
        base_head_dim=16,
    ),
]


@pytest.mark.parametrize("shape", AXES, ids=lambda s: f"L{s.n_layer}xD{s.d_model}xT{s.seq_len}")
def test_every_shape_counts_exactly_against_the_module_and_a_counted_forward(shape):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = GPT(shape)
    assert shape.param_counts()["total"] == sum(p.numel() for p in model.parameters())
    idx = torch.zeros(1, shape.seq_len, dtype=torch.long)
    # The math kernel runs attention as matmuls, which the counter sees; a lookup table and the
    # softmax are not matmuls, so the counted forward is App. F less those two terms.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx)
    t, v, d, h = shape.seq_len, shape.vocab_size, shape.d_model, shape.n_head
    uncounted = 2 * t * v * d + shape.n_layer * 3 * h * t * t
    assert counter.get_total_flops() == shape.forward_flops_per_sequence() - uncounted


def test_attention_term_grows_with_context_and_is_the_only_part_that_does():
    short = ModelShape(n_layer=4, d_model=256, n_head=8, vocab_size=1024, seq_len=256)
    long = short.with_context(1024)
    # 3 * 4 * (4 * 1024 * 256 + 3 * 8 * 1024) = 12,877,824 a token at 1024; 4x less at 256
    assert long.attention_flops_per_token() == 12_877_824 == 4 * short.attention_flops_per_token()
    assert (
        long.flops_per_token() - long.attention_flops_per_token()
        == short.flops_per_token() - short.attention_flops_per_token()
    )
    assert long.param_counts()["non_embedding"] == short.param_counts()["non_embedding"]
    assert long.param_counts()["embedding"] - short.param_counts()["embedding"] == 768 * 256  # position table


def test_kaplan_count_with_its_context_term():
    # GPT-2 small at n_ctx 1024: 6 * 85,056,000 + 6 * 12 * 1024 * 768 = 510.3M + 56.6M
    shape = ModelShape(n_layer=12, d_model=768, n_head=12, vocab_size=50257, seq_len=1024)
    assert shape.flops_per_token_kaplan() == 6 * 85_056_000 + 6 * 12 * 1024 * 768
    # Chinchilla's attention is twice Kaplan's term (both seq x seq products) plus the softmax:
    # (4 T d + 3 h T) / (2 T d) = 2 + 3 h / (2 d) = 2.0234 for 12 heads of 64
    ratio = shape.attention_flops_per_token() / (6 * 12 * 1024 * 768)
    assert ratio == pytest.approx(2 + 3 * 12 / (2 * 768))


def test_aspect_ratio_and_mup_multipliers():
    shape = ModelShape(
        n_layer=2, d_model=512, n_head=8, parametrization="mup", base_d_model=64, base_head_dim=8
    )
    assert shape.aspect_ratio == 256 and shape.width_multiplier == 8 and shape.output_multiplier == 0.125
    assert shape.attention_scale == pytest.approx(math.sqrt(8) / 64)  # 1/d_head scaling past the base head
    standard = ModelShape(n_layer=2, d_model=512, n_head=8)
    assert standard.attention_scale == pytest.approx(1 / 8) and standard.width_multiplier == 1
    by_heads = ModelShape(n_layer=2, d_model=512, n_head=32, parametrization="mup", base_d_model=64)
    assert by_heads.base_head_dim == 16 and by_heads.attention_scale == pytest.approx(
        1 / 4
    )  # heads unchanged


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(parametrization="ntk"), "parametrization='ntk'"),
        (dict(parametrization="mup", base_d_model=128), "base_d_model=128: must be in 1..d_model=64"),
        (dict(parametrization="mup"), "base_d_model=0"),
        (dict(parametrization="mup", base_d_model=32, base_head_dim=32), "base_head_dim=32"),
        (dict(base_d_model=32), "base_d_model=32: must be 0 under parametrization 'standard'"),
    ],
)
def test_bad_parametrization_names_the_field(fields, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        ModelShape(n_layer=2, d_model=64, n_head=4, **fields)
