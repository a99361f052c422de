"""Peak memory of one training worker: scaling_orchestrator.models.training.loop's loop on
scaling_orchestrator.models.gpt.GPT, term by term.

Plain arithmetic (no torch), so the planner sizes micro-batches on a laptop. Bytes, for a
micro-batch of b sequences of s tokens, width h, d_ff f, n_head a, vocab V, n_layer L,
P parameters:

- weights 4P, gradients 4P, AdamW exp_avg + exp_avg_sq 8P: every parameter stays fp32 under
  torch.autocast, which casts each matmul's operands on the fly, so the fp32 weights are the
  master weights. bf16 adds the autocast copies of the matmul weights (2 bytes each, L(4h^2 +
  2hf) + Vh): each Linear saves its bf16 weight for backward. Data-parallel (world_size > 1)
  adds DDP's gradient buckets, 4P (gradient_as_bucket_view is off).
- activations per layer, saved for backward (Korthikanti et al. 2022, arXiv 2205.05198, Sec.
  4.1: s*b*h*(34 + 5*a*s/h) bytes at 16 bits, with dropout). This GPT has no dropout (their 5
  sbh of masks and the 2 + 1 + 2 as^2b of dropout on the softmax are gone) and attends through
  F.scaled_dot_product_attention, whose flash / memory-efficient kernels (CPU flash, CUDA flash
  under bf16, memory-efficient under fp32) keep no s x s matrix, only the output and a
  logsumexp of 4 bytes per (b, a, s). Saved, per layer, in sbh units: the two LayerNorm inputs
  (the residual stream: fp32 under autocast too, as the embeddings are fp32 and a bf16 + fp32
  sum is fp32), the two LayerNorm outputs, Q, K, V, the attention output (already in the
  layout the output projection reads, so .contiguous() copies nothing), the GELU input and
  output (f/h each). With e bytes per activation (4 fp32, 2 bf16): 2*4 + e*(6 + 2f/h) bytes per
  sbh, plus 16 bytes per (b, s) of LayerNorm mean and rstd. fp32 at f = 4h: 64 sbh, twice the
  32 of Korthikanti's 16-bit count without dropout; bf16: 36 (their 32 + the fp32 residuals).
  attention="math" (SDPA's fallback) adds the softmax output, e*a*s^2*b.
- logits and loss: the caller's `_` keeps the logits (e bsV) through backward; cross_entropy
  upcasts them (bf16: a transient fp32 copy) and its log-softmax saves its fp32 output (4 bsV);
  backward then holds that output, its gradient and the logits' gradient at once: e + 12 bytes
  per (b, s, V), 16 at fp32. GPT-2's vocab makes this the largest term for small models.

The peak is the larger of two moments (both measured by bench/memory.py): the start of the
loss's backward (all activations and the logits' terms live, plus the gradients when an
earlier micro-batch of the step accumulated them), and the optimizer step (all gradients,
plus on CPU the unfused AdamW's temporaries, adamw_step_temporary_bytes; CUDA runs the
fused kernel). torch.compile (inductor) fuses and may recompute: the eager count is an
upper bound there.

Worked example, GPT-2 small (12 x 768, 12 heads, V 50257, P 124.4M) on 8 x 1024 tokens, bf16
on CUDA, no accumulation: weights and AdamW 12P = 1.49 GB, bf16 copies 0.25 GB, activations
12 x 8192 x 768 x 36 B = 2.72 GB (+ 0.04 GB of logsumexp, statistics and ids), logits
8192 x 50257 x 14 B = 5.76 GB: 10.27 GB at the loss's backward (the 0.50 GB of gradients
come later, as the activations go). bench/memory.py: within 3% on 7 CPU shapes; the llama
block (its own layer term, _llama_layer_bytes) within 0.5% on 3 more.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling_orchestrator.models.shape import ModelShape

BYTES_FP32 = 4
ACTIVATION_BYTES = {"float32": 4, "bfloat16": 2}
ATTENTION_KERNELS = ("flash", "math")  # flash: flash or memory-efficient SDPA (no s x s matrix)
DEVICES = ("cuda", "cpu")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training worker holds at its peak, by term (module doc)."""

    weights_bytes: int
    gradients_bytes: int  # fp32 .grad (+ DDP's buckets when data-parallel)
    optimizer_bytes: int  # AdamW exp_avg + exp_avg_sq, fp32
    weight_copies_bytes: int  # bf16 autocast copies of the matmul weights (0 at fp32)
    activations_bytes: int  # saved for backward: every layer, the final LayerNorm, the token ids
    logits_bytes: int  # logits, log-softmax and their gradients at the loss's backward
    step_bytes: int  # the optimizer step's temporaries (unfused AdamW on CPU)
    total_bytes: int  # the peak: static + the larger of the backward and the optimizer step

    def breakdown(self) -> dict[str, int]:
        return {
            "weights": self.weights_bytes,
            "gradients": self.gradients_bytes,
            "optimizer": self.optimizer_bytes,
            "weight_copies": self.weight_copies_bytes,
            "activations": self.activations_bytes,
            "logits": self.logits_bytes,
            "optimizer_step": self.step_bytes,
            "total": self.total_bytes,
        }


def layer_activation_bytes(
    shape: ModelShape, micro_batch_tokens: int, dtype: str = "float32", attention: str = "flash"
) -> int:
    """Bytes one block saves for backward at micro_batch_tokens = b*s tokens (module doc):
    256 wide, 4 heads, fp32, 2048 tokens: 2048 * 256 * 64 + 2048 * (4*4 + 16) = 33.6 MB."""
    e = _activation_bytes(dtype)
    tokens, h = micro_batch_tokens, shape.d_model
    if shape.block == "llama":
        per_token = _llama_layer_bytes(shape, e)
    else:
        per_token = h * (2 * BYTES_FP32 + e * 6) + 2 * shape.d_ff * e  # residuals, LN outs, QKV, out; GELU
        per_token += 4 * BYTES_FP32  # 2 LayerNorms' mean and rstd
    per_token += shape.n_head * BYTES_FP32  # SDPA's logsumexp per head
    if attention == "math":
        per_token += e * shape.n_head * shape.seq_len  # the softmax output: a*s^2*b over b*s tokens
    elif attention not in ATTENTION_KERNELS:
        raise ValueError(f"attention={attention!r}: allowed {ATTENTION_KERNELS}")
    return tokens * per_token


def _llama_layer_bytes(shape: ModelShape, e: int) -> int:
    """Bytes per token one llama block saves (models/llama.py), read off autograd's saved tensors:
    each RMSNorm (decomposed: x * rstd * gain) keeps its fp32 input, its fp32 normalised x (for the
    gain's gradient) and rstd, and its output is the next matmul's input (e); attention keeps the
    fused QKV output whole (h + 2 kv: V is a view of it), the rotated Q and K (h + kv) and its
    output (h, the output projection's input); SwiGLU its fused gate-and-up output (2f, whole:
    SiLU keeps the gate), SiLU's output and the product (f each). At kv = h: 16h + e(8h + 4f) + 8
    (gpt2: 8h + e(6h + 2f) + 16). QK-norm keeps the normalised Q and K in fp32 (h + kv) and an
    rstd per head, and under bf16 also the fp32 copies it normalises (h + kv again)."""
    h, kv = shape.d_model, shape.kv_heads * shape.head_dim
    per_token = 4 * BYTES_FP32 * h + e * (2 * h + (h + 2 * kv) + (h + kv) + h + 4 * shape.d_ff)
    per_token += 2 * BYTES_FP32  # the two RMSNorms' rstd
    if shape.qk_norm:
        per_token += BYTES_FP32 * (shape.n_head + shape.kv_heads)
        per_token += BYTES_FP32 * (h + kv) * (1 if e == BYTES_FP32 else 2)
    return per_token


def _block_matrices(shape: ModelShape) -> list[int]:
    """One block's matrices in parameter order: gpt2 QKV, out, fc, proj; llama QKV (K, V of
    kv_heads), out, gate-and-up, down."""
    h, f = shape.d_model, shape.d_ff
    if shape.block == "llama":
        return [h * (h + 2 * shape.kv_heads * shape.head_dim), h * h, 2 * f * h, f * h]
    return [3 * h * h, h * h, f * h, h * f]


def matmul_weight_count(shape: ModelShape) -> int:
    """Weights autocast copies to bf16: every Linear of the blocks and the output head (tied or
    not; the embedding lookups stay fp32): L(4h^2 + 2hf) + Vh for gpt2. 12 x 768, V 50257: 123.5M."""
    return shape.n_layer * sum(_block_matrices(shape)) + shape.vocab_size * shape.d_model


def estimate_memory(
    shape: ModelShape,
    micro_batch_tokens: int,
    dtype: str = "float32",
    *,
    accumulating: bool = False,
    world_size: int = 1,
    device: str = "cuda",
    attention: str = "flash",
) -> MemoryEstimate:
    """Peak bytes of one worker training `shape` on micro-batches of micro_batch_tokens (a whole
    number of seq_len sequences); accumulating: the step has more than one micro-batch, so the
    gradients of the earlier ones are live during each later backward."""
    if micro_batch_tokens <= 0 or micro_batch_tokens % shape.seq_len:
        raise ValueError(
            f"micro_batch_tokens={micro_batch_tokens}: must be a positive multiple of seq_len={shape.seq_len}"
        )
    if device not in DEVICES:
        raise ValueError(f"device={device!r}: allowed {DEVICES}")
    e = _activation_bytes(dtype)
    params = shape.param_counts()["total"]
    weights = BYTES_FP32 * params
    gradients = BYTES_FP32 * params * (2 if world_size > 1 else 1)
    optimizer = 2 * BYTES_FP32 * params
    copies = 2 * matmul_weight_count(shape) if dtype == "bfloat16" else 0
    tokens, h = micro_batch_tokens, shape.d_model
    activations = (
        shape.n_layer * layer_activation_bytes(shape, tokens, dtype, attention)
        + tokens * (h * (BYTES_FP32 + e) + 2 * BYTES_FP32)  # final LayerNorm: input, output, stats
        + tokens * h * BYTES_FP32 * (shape.block == "llama")  # an RMSNorm keeps its normalised x too
        + tokens * 3 * 8
    )  # int64 inputs, targets and their flattened copy
    logits = tokens * shape.vocab_size * (e + 3 * BYTES_FP32)
    step = adamw_step_temporary_bytes(shape) if device == "cpu" else 0
    backward = copies + activations + logits + (gradients if accumulating else 0)
    total = weights + optimizer + max(backward, gradients + step)
    return MemoryEstimate(
        weights_bytes=weights,
        gradients_bytes=gradients,
        optimizer_bytes=optimizer,
        weight_copies_bytes=copies,
        activations_bytes=activations,
        logits_bytes=logits,
        step_bytes=step,
        total_bytes=total,
    )


def adamw_step_temporary_bytes(shape: ModelShape) -> int:
    """The unfused (CPU) AdamW step's temporaries: updating a matrix allocates sqrt(exp_avg_sq)
    and its quotient by the bias correction, while the previous matrix's `denom` is still
    referenced; the most of prev + 2 x current over the decay group, in scaling_orchestrator.models.gpt's
    parameter
    order. 12 x 768, V 50257, tied: the token table first, 2 x 50257 x 768 x 4 B = 309 MB."""
    h, v = shape.d_model, shape.vocab_size
    sizes = [v * h] + ([shape.seq_len * h] if shape.block == "gpt2" else [])
    sizes += shape.n_layer * _block_matrices(shape) + ([] if shape.tied_embeddings else [v * h])
    return BYTES_FP32 * max(prev + 2 * cur for prev, cur in zip([0] + sizes, sizes))


def _activation_bytes(dtype: str) -> int:
    if dtype not in ACTIVATION_BYTES:
        raise ValueError(f"dtype={dtype!r}: allowed {tuple(ACTIVATION_BYTES)}")
    return ACTIVATION_BYTES[dtype]


__all__ = [
    "ACTIVATION_BYTES",
    "ATTENTION_KERNELS",
    "MemoryEstimate",
    "adamw_step_temporary_bytes",
    "estimate_memory",
    "layer_activation_bytes",
    "matmul_weight_count",
]
