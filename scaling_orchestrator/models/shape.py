"""The Transformer size family: one shape, its exact parameter count and training FLOPs.

`ModelShape` describes the GPT in `scaling_orchestrator.models.gpt` (GPT-2 layout: learned absolute position
embeddings, pre-norm LayerNorm with bias, biased linear layers, GELU MLP). `param_counts()` is
the exact `sum(p.numel())` of that module, so analysis can pick its convention (Kaplan's
non-embedding N, or the total). `flops_per_token()` is the exact Chinchilla count (Hoffmann et
al. 2022, Appendix F); `flops_per_token_6n()` is Kaplan et al. 2020's 6N (Section 2.1) and
`flops_per_token_kaplan()` their 6N + 6 n_layer n_ctx d_attn (Eq. 2.2 with its context term).

Three axes, each its own number: depth (n_layer), width (d_model, with n_head heads of
head_dim) and context (seq_len). Only the position table (seq_len x d_model) and the attention
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


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"ModelShape.{name}={value!r}: must be a positive integer")


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int = 0  # 0 means 4 * d_model, the GPT-2 / Chinchilla ratio (Table A9: ffw = 4 d_model)
    vocab_size: int = 256
    seq_len: int = 128
    tied_embeddings: bool = True
    parametrization: str = "standard"  # "standard" | "mup" (models/mup.py)
    base_d_model: int = 0  # mup: the width its hyperparameters were tuned at (<= d_model); 0 under standard
    base_head_dim: int = 0  # mup: the head size at that width; 0 -> head_dim (width grows by adding heads)

    # Fields added after trial ids were published: hashed only when they differ from their default.
    ADDED_FIELDS: ClassVar[tuple[str, ...]] = ("parametrization", "base_d_model", "base_head_dim")

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
        if not isinstance(self.tied_embeddings, bool):
            raise ValueError(f"ModelShape.tied_embeddings={self.tied_embeddings!r}: must be true or false")
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        self._check_parametrization()

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
        n_head = d_model / head_dim; d_ff = 4 * d_model; n_layer = depth.
        depth 4 -> d_model 128, 4 heads; depth 6 -> 192, 6 heads (aspect 32, head_dim 32).
        `fields` are the rest (tied_embeddings, parametrization, base_d_model, base_head_dim).
        """
        for name, value in (("depth", depth), ("aspect_ratio", aspect_ratio), ("head_dim", head_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape.from_depth {name}={value!r}: must be a positive integer")
        d_model = -(-depth * aspect_ratio // head_dim) * head_dim
        return cls(
            n_layer=depth,
            d_model=d_model,
            n_head=d_model // head_dim,
            d_ff=4 * d_model,
            vocab_size=vocab_size,
            seq_len=seq_len,
            **fields,
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

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
        """Exact parameter counts of scaling_orchestrator.models.gpt.GPT built from this shape.

        embedding = token table (vocab*d) + position table (seq_len*d); head = the untied output
        projection (vocab*d, no bias; key only present when untied); non_embedding = the rest
        (blocks, their biases and LayerNorms, and the final LayerNorm): Kaplan's N.
        GPT-2 small (12 x 768, vocab 50257, seq 1024, tied): 124,439,808 total.
        """
        d, f = self.d_model, self.d_ff
        attention = (d * 3 * d + 3 * d) + (d * d + d)  # fused QKV + output projection, with biases
        mlp = (d * f + f) + (f * d + d)
        layer_norms = 2 * (2 * d)  # two LayerNorms per block, weight + bias each
        blocks = self.n_layer * (attention + mlp + layer_norms)
        embedding = self.vocab_size * d + self.seq_len * d
        head = 0 if self.tied_embeddings else self.vocab_size * d
        non_embedding = blocks + 2 * d  # + final LayerNorm
        counts = {
            "total": embedding + non_embedding + head,
            "embedding": embedding,
            "non_embedding": non_embedding,
        }
        if not self.tied_embeddings:
            counts["head"] = head
        return counts

    def forward_flops_per_sequence(self, *, embeddings_and_logits: bool = True) -> int:
        """Forward FLOPs for one seq_len sequence, term by term as Chinchilla Appendix F.

        A multiply-add counts 2. The attention terms use the full seq x seq matrix (the paper
        does not halve for the causal mask). The embedding term is the paper's 2*seq*vocab*d
        (a one-hot matmul), though a lookup table costs next to nothing.
        """
        t, d, v, h, k = self.seq_len, self.d_model, self.vocab_size, self.n_head, self.head_dim
        qkv = 2 * 3 * t * d * (k * h)
        logits_qk = 2 * t * t * (k * h)
        softmax = 3 * h * t * t
        attend_values = 2 * t * t * (k * h)
        out_projection = 2 * t * (k * h) * d
        ffn = 2 * t * (d * self.d_ff + d * self.d_ff)
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
    return (
        f"{shape.n_layer}L x {shape.d_model}d x {shape.n_head}h, {total / 1e6:.1f}M params, "
        f"{shape.flops_per_token() / 1e9:.3g} GFLOP/token (6N {shape.flops_per_token_6n() / 1e9:.3g}){mup}"
    )


__all__ = ["PARAMETRIZATIONS", "ModelShape", "chinchilla_table_a4_ratio", "shape_summary"]
