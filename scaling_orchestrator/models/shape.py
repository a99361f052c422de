"""The Transformer size family: one shape, its exact parameter count and training FLOPs.

`ModelShape` describes one of two blocks (`block`): "gpt2", the GPT of
`scaling_orchestrator.models.gpt` (learned absolute position embeddings, pre-norm LayerNorm with
bias, biased linear layers, GELU MLP), or "llama", `scaling_orchestrator.models.llama` (pre-norm
RMSNorm, SwiGLU, rotary positions, no biases, optional grouped-query attention and QK-norm).
`param_counts()` is the exact `sum(p.numel())` of that module, so analysis can pick its convention (Kaplan's
non-embedding N, or the total). `flops_per_token()` is the exact Chinchilla count (Hoffmann et
al. 2022, Appendix F); `flops_per_token_6n()` is Kaplan et al. 2020's 6N (Section 2.1) and
`flops_per_token_kaplan()` their 6N + 6 n_layer n_ctx d_attn (Eq. 2.2 with its context term).

Three axes, each its own number: depth (n_layer), width (d_model, with n_head heads of
head_dim) and context (seq_len). Only gpt2's position table (seq_len x d_model) and the attention
terms depend on the context; `attention_flops_per_token()` is the context-dependent part.

`parametrization` "mup" (Yang et al. 2022, Tensor Programs V; rules in models/mup.py) scales
init, Adam LRs, the attention logits and the output logits by the width multiplier
d_model / base_d_model; it changes no parameter and no FLOP count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

PARAMETRIZATIONS = ("standard", "mup")
BLOCKS = ("gpt2", "llama")  # models/gpt.py, models/llama.py
# What only a llama block has: each must keep its default under gpt2.
LLAMA_FIELDS = {"n_kv_heads": 0, "qk_norm": False, "ffn_multiple_of": 64, "rope_theta": 10000.0}


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"ModelShape.{name}={value!r}: must be a positive integer")


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int = 0  # 0: gpt2 4 * d_model (Chinchilla Table A9); llama 8/3 d_model up to ffn_multiple_of
    vocab_size: int = 256
    seq_len: int = 128
    tied_embeddings: bool | None = None  # None: tied for gpt2 (GPT-2), untied for llama (Llama 2/3)
    parametrization: str = "standard"  # "standard" | "mup" (models/mup.py)
    base_d_model: int = 0  # mup: the width its hyperparameters were tuned at (<= d_model); 0 under standard
    base_head_dim: int = 0  # mup: the head size at that width; 0 -> head_dim (width grows by adding heads)
    block: str = "gpt2"  # "gpt2" (models/gpt.py) | "llama" (models/llama.py)
    n_kv_heads: int = 0  # llama: key/value heads, grouped-query attention (Ainslie et al. 2023); 0 -> n_head
    qk_norm: bool = False  # llama: RMSNorm on each head's queries and keys (OLMo 2, Qwen 3)
    ffn_multiple_of: int = 64  # llama: the default d_ff is rounded up to a multiple of this
    rope_theta: float = 10000.0  # llama: the rotary base (Su et al. 2021)

    # Fields added after trial ids were published: hashed only when they differ from their default.
    ADDED_FIELDS: ClassVar[tuple[str, ...]] = (
        "parametrization", "base_d_model", "base_head_dim", "block", *LLAMA_FIELDS,
    )

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "vocab_size", "seq_len"):
            _check_positive(name, getattr(self, name))
        if isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise ValueError(f"ModelShape.d_ff={self.d_ff!r}: must be a positive integer, or 0 for 4*d_model")
        if self.d_model % self.n_head:
            raise ValueError(
                f"ModelShape.d_model={self.d_model}: must be a multiple of n_head={self.n_head} "
                f"(head size d_model/n_head must be whole)"
            )
        if self.tied_embeddings is None:
            object.__setattr__(self, "tied_embeddings", self.block != "llama")
        if not isinstance(self.tied_embeddings, bool):
            raise ValueError(f"ModelShape.tied_embeddings={self.tied_embeddings!r}: must be true or false")
        self._check_block()
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", self.default_d_ff())
        self._check_parametrization()

    def _check_block(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"ModelShape.block={self.block!r}: must be one of {', '.join(BLOCKS)}")
        if self.block == "gpt2":
            for name, default in LLAMA_FIELDS.items():
                if getattr(self, name) != default:
                    raise ValueError(f"ModelShape.{name}={getattr(self, name)!r}: applies to block 'llama', "
                                     f"not 'gpt2'")
            return
        for name in ("n_kv_heads", "ffn_multiple_of"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (name == "ffn_multiple_of"):
                raise ValueError(f"ModelShape.{name}={value!r}: must be a whole number >= "
                                 f"{int(name == 'ffn_multiple_of')}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"ModelShape.n_kv_heads={self.n_kv_heads}: must be a divisor of "
                             f"n_head={self.n_head} (each key/value head serves n_head / n_kv_heads)")
        if self.head_dim % 2:
            raise ValueError(f"ModelShape.d_model={self.d_model}: d_model/n_head={self.head_dim} must be "
                             f"even under block 'llama' (rotary embeddings turn pairs of coordinates)")
        if not isinstance(self.qk_norm, bool):
            raise ValueError(f"ModelShape.qk_norm={self.qk_norm!r}: must be true or false")
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 1:
            raise ValueError(f"ModelShape.rope_theta={theta!r}: must be a number > 1")

    def default_d_ff(self) -> int:
        """gpt2: 4 d_model. llama: 8/3 d_model (SwiGLU's three matrices cost what two of 4 d_model
        would, Shazeer 2020) rounded up to ffn_multiple_of: 128 wide, multiple 64 -> 341.3 -> 384;
        Llama 2 7B (4096, multiple 256) -> 11008."""
        if self.block == "gpt2":
            return 4 * self.d_model
        step = self.ffn_multiple_of
        return -(-8 * self.d_model // (3 * step)) * step

    def _check_parametrization(self) -> None:
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"ModelShape.parametrization={self.parametrization!r}: must be one of "
                             f"{', '.join(PARAMETRIZATIONS)}")
        for name in ("base_d_model", "base_head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ModelShape.{name}={value!r}: must be a whole number >= 0")
            if self.parametrization == "standard" and value:
                raise ValueError(f"ModelShape.{name}={value}: must be 0 under parametrization 'standard' "
                                 f"(a base width is a mup setting)")
        if self.parametrization == "standard":
            return
        if not 1 <= self.base_d_model <= self.d_model:
            raise ValueError(
                f"ModelShape.base_d_model={self.base_d_model}: must be in 1..d_model={self.d_model} "
                f"(mup scales up from a base width no wider than the model)"
            )
        if self.base_head_dim > self.head_dim:
            raise ValueError(
                f"ModelShape.base_head_dim={self.base_head_dim}: must be at most "
                f"head_dim={self.head_dim} (mup scales up from a base head size)"
            )
        if self.base_head_dim == 0:
            object.__setattr__(self, "base_head_dim", self.head_dim)

    @classmethod
    def from_depth(
        cls,
        depth: int,
        *,
        vocab_size: int,
        seq_len: int,
        aspect_ratio: int = 32,
        head_dim: int = 32,
        **fields,
    ) -> ModelShape:
        """One size dial, as nanochat's `--depth`: width and heads follow by formula.

        d_model = depth * aspect_ratio rounded UP to a multiple of head_dim;
        n_head = d_model / head_dim; d_ff the block's default; n_layer = depth.
        depth 4 -> d_model 128, 4 heads; depth 6 -> 192, 6 heads (aspect 32, head_dim 32).
        `fields` are the rest (block, tied_embeddings, parametrization, base_d_model, ...).
        """
        for name, value in (("depth", depth), ("aspect_ratio", aspect_ratio), ("head_dim", head_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape.from_depth {name}={value!r}: must be a positive integer")
        d_model = -(-depth * aspect_ratio // head_dim) * head_dim
        return cls(
            n_layer=depth,
            d_model=d_model,
            n_head=d_model // head_dim,
            vocab_size=vocab_size,
            seq_len=seq_len,
            **fields,
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_heads under grouped-query attention, else n_head."""
        return self.n_kv_heads or self.n_head

    @property
    def aspect_ratio(self) -> float:
        """d_model / n_layer, Kaplan et al. 2020's shape axis (Fig. 5): 12 x 768 -> 64."""
        return self.d_model / self.n_layer

    @property
    def width_multiplier(self) -> float:
        """mup's m = d_model / base_d_model (1 under standard): 512 wide on a 64 base -> 8."""
        return self.d_model / self.base_d_model if self.parametrization == "mup" else 1.0

    @property
    def attention_scale(self) -> float:
        """The softmax logit scale: 1/sqrt(d_head) (Vaswani et al. 2017) under standard;
        mup's 1/d_head (Tensor Programs V, Sec. 4), as sqrt(base_head_dim)/d_head so that it
        equals the standard one at the base head size: base 16, head 64 -> 4/64 = 1/16, not 1/8."""
        if self.parametrization == "mup":
            return math.sqrt(self.base_head_dim) / self.head_dim
        return 1.0 / math.sqrt(self.head_dim)

    @property
    def output_multiplier(self) -> float:
        """What the output logits are multiplied by: mup's 1/m (1 under standard)."""
        return 1.0 / self.width_multiplier

    def with_context(self, seq_len: int) -> ModelShape:
        """The same network at another context: only the position table and attention change."""
        return dataclasses.replace(self, seq_len=seq_len)

    def param_counts(self) -> dict[str, int]:
        """Exact parameter counts of the block's module (models.build.build_model(shape)).

        embedding = token table (vocab*d), + position table (seq_len*d) for gpt2; head = the
        untied output projection (vocab*d, no bias; key only present when untied); non_embedding
        = the rest (blocks and the final norm): Kaplan's N.
        GPT-2 small (12 x 768, vocab 50257, seq 1024, tied): 124,439,808 total.
        Llama 2 7B (32 x 4096, d_ff 11008, vocab 32000, untied): 6,738,415,616.
        """
        d = self.d_model
        embedding = self.vocab_size * d + (self.seq_len * d if self.block == "gpt2" else 0)
        head = 0 if self.tied_embeddings else self.vocab_size * d
        non_embedding = self.n_layer * self._layer_params() + (2 * d if self.block == "gpt2" else d)
        counts = {
            "total": embedding + non_embedding + head,
            "embedding": embedding,
            "non_embedding": non_embedding,
        }
        if not self.tied_embeddings:
            counts["head"] = head
        return counts

    def _layer_params(self) -> int:
        """One block. gpt2: fused QKV and output projection, GELU MLP, all with biases, two
        LayerNorms (weight + bias). llama: Q (d x d), K and V (d x kv_heads*head_dim each), the
        output projection, SwiGLU's gate, up and down matrices, two RMSNorm gains, no biases;
        qk_norm adds one head_dim gain each for queries and keys."""
        d, f = self.d_model, self.d_ff
        if self.block == "gpt2":
            return (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * (2 * d)
        kv = self.kv_heads * self.head_dim
        attention = d * (d + 2 * kv) + d * d
        return attention + 3 * d * f + 2 * d + (2 * self.head_dim if self.qk_norm else 0)

    def forward_flops_per_sequence(self, *, embeddings_and_logits: bool = True) -> int:
        """Forward FLOPs for one seq_len sequence, term by term as Chinchilla Appendix F.

        A multiply-add counts 2. The attention terms use the full seq x seq matrix (the paper
        does not halve for the causal mask). The embedding term is the paper's 2*seq*vocab*d
        (a one-hot matmul), though a lookup table costs next to nothing. llama: K and V project
        to kv_heads*head_dim (grouped-query attention: 2 kv_heads/n_head of Q's cost), and the
        SwiGLU MLP has three d x d_ff matrices. As App. F leaves out norms, activations and
        residual sums, this leaves out llama's elementwise work: RoPE's 3 FLOPs per rotated
        coordinate (x cos + rotate(x) sin), 3 t (n_head + kv_heads) head_dim per layer, SiLU and
        the gate's product (about 5 t d_ff), and QK-norm; at 4L x 256d, seq 256, d_ff 704 these
        are 0.3% of the count.
        """
        t, d, v, h, k = self.seq_len, self.d_model, self.vocab_size, self.n_head, self.head_dim
        qkv = 2 * t * d * k * (h + 2 * (self.kv_heads if self.block == "llama" else h))
        logits_qk = 2 * t * t * (k * h)
        softmax = 3 * h * t * t
        attend_values = 2 * t * t * (k * h)
        out_projection = 2 * t * (k * h) * d
        ffn = 2 * t * d * self.d_ff * (3 if self.block == "llama" else 2)
        flops = self.n_layer * (qkv + logits_qk + softmax + attend_values + out_projection + ffn)
        if embeddings_and_logits:
            flops += 2 * t * v * d + 2 * t * d * v  # input embeddings + final logits
        return flops

    def flops_per_token(self) -> float:
        """Exact training FLOPs per token: 3 x forward (backward = 2 x forward), over seq_len."""
        return 3 * self.forward_flops_per_sequence() / self.seq_len

    def flops_per_token_6n(self) -> float:
        """Kaplan et al. 2020 C = 6N per token, N = non-embedding parameters."""
        return 6.0 * self.param_counts()["non_embedding"]

    def attention_flops_per_token(self) -> float:
        """The context-dependent share of flops_per_token(): 3 x (QK^T logits + softmax + the
        weighted sum of values) per layer over seq_len, = 3 n_layer (4 n_ctx d_attn + 3 n_head n_ctx).
        Chinchilla counts both seq x seq products in full, 4 n_ctx d_attn forward per layer and
        token, twice Kaplan's 2 n_ctx d_attn (their Table 1 counts one, as a causal mask halves
        both). 4L x 256d, 8 heads at n_ctx 1024: 3 * 4 * (4*1024*256 + 3*8*1024) = 12.9M a token."""
        t, attn, h = self.seq_len, self.n_head * self.head_dim, self.n_head
        return 3.0 * self.n_layer * (4 * t * attn + 3 * h * t)

    def flops_per_token_kaplan(self) -> float:
        """Kaplan et al. 2020 Eq. 2.2 with its context term, training = 3 x forward:
        6N + 6 n_layer n_ctx d_attn; 12 x 768 at n_ctx 1024: 6 * 85.0M + 6 * 12 * 1024 * 768 = 567M."""
        return self.flops_per_token_6n() + 6.0 * self.n_layer * self.seq_len * self.n_head * self.head_dim


def chinchilla_table_a4_ratio(shape: ModelShape) -> float:
    """Chinchilla FLOPs / 6N as printed in Hoffmann et al. 2022 Table A4.

    The table's ratios (1.03 ... 0.99) come out only with the embedding and final-logit FLOPs
    LEFT OUT of the exact count and N counting the output embedding (vocab*d) plus Chinchilla's
    relative-position attention parameters (Transformer-XL style: a d x d relative-key
    projection and two d-vectors of biases, d^2 + 2d per layer), and no absolute position
    table; this is the reading of karpathy/nanoGPT `scaling_laws.ipynb`. It is a validation
    helper: `flops_per_token()` keeps the full count.
    73M row (10 x 640, ffw 2560, seq 2048, vocab 32000): 4.54e8 / (6 * 7.38e7) = 1.025.
    """
    d = shape.d_model
    exact = 3 * shape.forward_flops_per_sequence(embeddings_and_logits=False) / shape.seq_len
    counts = shape.param_counts()
    n_params = counts["total"] - shape.seq_len * d + shape.n_layer * (d * d + 2 * d)
    if shape.tied_embeddings is False:
        n_params -= shape.vocab_size * d  # one vocab x d table, as the notebook counts
    return exact / (6.0 * n_params)


def shape_summary(shape: ModelShape) -> str:
    """One line for logs: `12L x 768d x 12h, 124.4M params, 1.0 GFLOP/token`."""
    total = shape.param_counts()["total"]
    mup = f", mup on base {shape.base_d_model}" if shape.parametrization == "mup" else ""
    mup += "" if shape.block == "gpt2" else f", {shape.block}"
    return (
        f"{shape.n_layer}L x {shape.d_model}d x {shape.n_head}h, {total / 1e6:.1f}M params, "
        f"{shape.flops_per_token() / 1e9:.3g} GFLOP/token (6N {shape.flops_per_token_6n() / 1e9:.3g}){mup}"
    )


__all__ = [
    "BLOCKS", "LLAMA_FIELDS", "PARAMETRIZATIONS", "ModelShape", "chinchilla_table_a4_ratio", "shape_summary",
]
