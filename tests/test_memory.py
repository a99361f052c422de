"""The memory model: its terms on a worked example, monotone in every dial, and one measured peak."""

import json
import os
import subprocess
import sys

import pytest

from scaling_orchestrator.models.memory import estimate_memory, layer_activation_bytes, matmul_weight_count
from scaling_orchestrator.models.shape import ModelShape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 2 x 64, 2 heads, d_ff 256, vocab 512, seq 32: P = 512*64 + 32*64 + 2*(4*64*64 + 4*64 + 2*64*256 + 256 + 64
# + 4*64) + 2*64 = 34,816 + 2 * 49,984 + 128 = 134,912.
SMALL = ModelShape(n_layer=2, d_model=64, n_head=2, vocab_size=512, seq_len=32)


def test_terms_on_a_worked_example():
    assert SMALL.param_counts()["total"] == 134_912
    e = estimate_memory(SMALL, 4 * 32, "float32", device="cuda")  # 4 sequences: 128 tokens
    assert (e.weights_bytes, e.gradients_bytes, e.optimizer_bytes) == (539_648, 539_648, 1_079_296)
    assert e.weight_copies_bytes == 0 and e.step_bytes == 0  # fp32; fused AdamW on CUDA
    # per token of a layer: h (2*4 + 4*6) + 2 d_ff 4 + 4 a + 16 = 64*32 + 2048 + 8 + 16 = 4,120
    assert layer_activation_bytes(SMALL, 128) == 128 * 4_120
    # 2 layers + final LayerNorm (h (4 + 4) + 8 per token) + 3 int64 ids per token
    assert e.activations_bytes == 2 * 128 * 4_120 + 128 * (64 * 8 + 8) + 128 * 24
    assert e.logits_bytes == 128 * 512 * 16  # logits 4 + log-softmax out 4 + two gradients 4 + 4
    assert e.total_bytes == 539_648 + 1_079_296 + e.activations_bytes + e.logits_bytes


def test_bfloat16_keeps_fp32_weights_and_halves_the_16_bit_terms():
    fp32, bf16 = (estimate_memory(SMALL, 128, dtype) for dtype in ("float32", "bfloat16"))
    assert (bf16.weights_bytes, bf16.gradients_bytes, bf16.optimizer_bytes) == \
        (fp32.weights_bytes, fp32.gradients_bytes, fp32.optimizer_bytes)
    copies = 2 * (2 * (4 * 64 * 64 + 2 * 64 * 256) + 512 * 64)  # every Linear's weight and the output head
    assert bf16.weight_copies_bytes == 2 * matmul_weight_count(SMALL) == copies
    # per layer token: residuals 8 h stay fp32, the rest halves: 64*(8 + 12) + 2*256*2 + 24 = 2,328
    assert layer_activation_bytes(SMALL, 128, "bfloat16") == 128 * 2_328
    assert bf16.logits_bytes == 128 * 512 * 14


def test_accumulation_data_parallel_and_cpu_add_their_terms():
    base = estimate_memory(SMALL, 128)
    accumulating = estimate_memory(SMALL, 128, accumulating=True)
    assert accumulating.total_bytes - base.total_bytes == base.gradients_bytes
    ddp = estimate_memory(SMALL, 128, world_size=2)
    assert ddp.gradients_bytes == 2 * base.gradients_bytes
    cpu = estimate_memory(SMALL, 32, device="cpu")
    assert cpu.step_bytes == 2 * 4 * 512 * 64  # two temporaries of the largest tensor, the 512 x 64 table


def test_math_attention_keeps_the_s_by_s_matrix():
    long = ModelShape(n_layer=1, d_model=64, n_head=2, vocab_size=256, seq_len=1024)
    flash, math_ = (layer_activation_bytes(long, 2048, attention=kind) for kind in ("flash", "math"))
    assert math_ - flash == 4 * 2 * 1024 * 2048  # e a s^2 b: 4 bytes x 2 heads x 1024^2 x 2 sequences


@pytest.mark.parametrize("dial", ["n_layer", "d_model", "vocab_size", "seq_len", "tokens"])
def test_estimate_grows_with_every_dial(dial):
    def total(scale: int) -> int:
        fields = dict(n_layer=2, d_model=64, n_head=2, vocab_size=512, seq_len=32)
        tokens = 128 * (scale if dial == "tokens" else 1)
        if dial != "tokens":
            fields[dial] *= scale
        if dial == "seq_len":
            tokens *= scale
        return estimate_memory(ModelShape(**fields), tokens, "bfloat16").total_bytes

    assert total(1) < total(2) < total(4)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="micro_batch_tokens=100: must be a positive multiple of seq_len=32"):
        estimate_memory(SMALL, 100)
    with pytest.raises(ValueError, match="dtype='float16'"):
        estimate_memory(SMALL, 128, "float16")
    with pytest.raises(ValueError, match="attention='dense'"):
        layer_activation_bytes(SMALL, 128, attention="dense")


@pytest.mark.slow  # a subprocess that trains
def test_measured_peak_is_near_the_estimate():
    """One shape through bench/memory.py's fresh-process measurement (peak RSS less a baseline
    process's), vocab-bound so that the loss's terms count and the FLOPs stay few. The bench
    holds 7 shapes within 3%; 20% here leaves room for another libc or BLAS."""
    case = dict(n_layer=2, d_model=64, n_head=2, vocab_size=16384, seq_len=128, tied=True,
                rows=8, micro_rows=4, dtype="float32", device="cpu")
    code = ("import json, sys; sys.path.insert(0, 'bench'); import memory; "
            f"case = json.loads({json.dumps(json.dumps(case))}); "
            "print(memory.estimate(case), memory.measured_peak(case))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    estimate, measured = (int(x) for x in out.stdout.split())
    assert measured > 100e6  # the loop did allocate: 512 tokens of 16384-wide logits at 16 bytes are 134 MB
    assert abs(estimate / measured - 1) < 0.20
