"""Decoder-only Transformer in the Llama layout (Touvron et al. 2023), sized by a ModelShape with
block "llama".

Pre-norm blocks (x + attn(rms(x)), x + mlp(rms(x))) with RMSNorm gains and no biases anywhere
(Zhang & Sennrich 2019), a SwiGLU MLP (Shazeer 2020: down(silu(gate x) * up x), gate and up
fused into one d x 2 d_ff matmul), rotary position embeddings on queries and keys (Su et al.
2021; no position table) in the rotate-half layout of Hugging Face's Llama, so exported
weights need no permutation, optional grouped-query attention (n_kv_heads key/value heads, each
serving n_head / n_kv_heads query heads; Ainslie et al. 2023) and optional QK-norm (an RMSNorm
gain of head_dim on each head's queries and keys before the rotation, as OLMo 2 and Qwen 3).
Embeddings are untied unless the shape ties them. The parameter count equals
ModelShape.param_counts()["total"] exactly: Llama 2 7B's shape gives 6,738,415,616.

Module names follow models/gpt.py (attn.qkv, attn.proj, mlp.fc, mlp.proj, token_embedding,
lm_head), so μP's roles (models/mup.py) and its coordinate check apply unchanged: the norms
are vectors, the four matrices per block hidden. Init is GPT-2's (std 0.02, residual
projections 0.02 / sqrt(2 n_layer)), gains 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling_orchestrator.models.mup import scale_init_
from scaling_orchestrator.models.shape import ModelShape

RMS_EPS = 1e-6  # Hugging Face LlamaConfig.rms_norm_eps's default, so an export computes the same norm


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * gain, computed in fp32 (as Hugging Face's LlamaRMSNorm)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), RMS_EPS).to(x.dtype)


def rotary_tables(shape: ModelShape, seq: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position p x theta^(-2i/head_dim), i < head_dim/2, each repeated for the
    two halves: (seq, 1, head_dim), to broadcast over (batch, seq, heads, head_dim). theta 10000,
    head_dim 64: pair 0 turns 1 rad a token, pair 31 1.3e-4 rad."""
    k = shape.head_dim
    exponents = torch.arange(0, k, 2, dtype=torch.float, device=device) / k
    inv_freq = 1.0 / (float(shape.rope_theta) ** exponents)
    angles = torch.arange(seq, dtype=torch.float, device=device)[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)[:, None, :]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x cos + rotate_half(x) sin, rotate_half(a, b) = (-b, a) over the head's two halves."""
    half = x.size(-1) // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + turned * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.n_head, self.kv_heads, self.head_dim = shape.n_head, shape.kv_heads, shape.head_dim
        self.scale = shape.attention_scale if shape.parametrization == "mup" else None
        kv = shape.kv_heads * shape.head_dim
        self.qkv = nn.Linear(shape.d_model, shape.d_model + 2 * kv, bias=False)  # Q, K, V in one matmul
        self.proj = nn.Linear(shape.d_model, shape.d_model, bias=False)
        self.q_norm = RMSNorm(shape.head_dim) if shape.qk_norm else None
        self.k_norm = RMSNorm(shape.head_dim) if shape.qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        kv = self.kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([width, kv, kv], dim=2)
        q = q.view(batch, seq, self.n_head, self.head_dim)
        k = k.view(batch, seq, self.kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        # Rotated in (batch, seq, heads, head_dim) and only then transposed to (batch, heads, seq,
        # head_dim), as models/gpt.py: SDPA's output keeps that layout, so .contiguous() below copies
        # nothing (rotating after the transpose made it copy: one more h per token saved, measured).
        q, k = rotate(q, cos, sin).transpose(1, 2), rotate(k, cos, sin).transpose(1, 2)
        v = v.view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.kv_heads != self.n_head
        )
        return self.proj(y.transpose(1, 2).contiguous().view(batch, seq, width))


class SwiGLU(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.d_ff = shape.d_ff
        self.fc = nn.Linear(shape.d_model, 2 * shape.d_ff, bias=False)  # gate, then up
        self.proj = nn.Linear(shape.d_ff, shape.d_model, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).split(self.d_ff, dim=-1)
        return self.proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.ln_attn = RMSNorm(shape.d_model)
        self.attn = Attention(shape)
        self.ln_mlp = RMSNorm(shape.d_model)
        self.mlp = SwiGLU(shape)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), cos, sin)
        return x + self.mlp(self.ln_mlp(x))


class Llama(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        if shape.block != "llama":
            raise ValueError(f"ModelShape.block={shape.block!r}: Llama builds block 'llama'")
        self.shape = shape
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_final = RMSNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        if shape.tied_embeddings:
            self.lm_head.weight = self.token_embedding.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        residual_std = 0.02 / math.sqrt(2 * shape.n_layer)  # GPT-2's 1/sqrt(N) on the residual writes
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)
        scale_init_(self, shape)
        self.output_multiplier = shape.output_multiplier

    def num_params(self) -> int:
        """Unique parameters (a tied table counts once), = shape.param_counts()["total"]."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (batch, seq) token ids -> logits (batch, seq, vocab) and mean cross-entropy (nats)."""
        seq = idx.size(1)
        if seq > self.shape.seq_len:
            raise ValueError(f"input length {seq}: must be <= seq_len={self.shape.seq_len}")
        cos, sin = rotary_tables(self.shape, seq, idx.device)
        x = self.token_embedding(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(self.ln_final(x))
        if self.output_multiplier != 1.0:  # mup's 1/m (models/mup.py)
            logits = logits * self.output_multiplier
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss
