"""Decoder-only GPT in the GPT-2 layout, sized by a ModelShape.

Pre-norm blocks (x + attn(ln(x)), x + mlp(ln(x))), causal self-attention through
F.scaled_dot_product_attention (scale 1/sqrt(d_k)), a GELU MLP of width d_ff, learned absolute
position embeddings (GPT-2; Chinchilla used relative ones, see shape.chinchilla_table_a4_ratio),
biases in every Linear and LayerNorm, and optionally tied input/output embeddings (Press & Wolf
2017). The parameter count equals ModelShape.param_counts()["total"] exactly: GPT-2 small
(12 x 768) has 124,439,808.

Under shape.parametrization "mup" (models/mup.py) the hidden weights start 1/sqrt(m) smaller,
attention scales logits by sqrt(base_head_dim)/d_head and the output logits are multiplied by
1/m, m = d_model / base_d_model; at m = 1 the model is the standard one, draw for draw.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling_orchestrator.models.mup import scale_init_
from scaling_orchestrator.models.shape import ModelShape


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.n_head = shape.n_head
        # None: SDPA's own 1/sqrt(d_k), so a standard model is bit for bit what it was
        self.scale = shape.attention_scale if shape.parametrization == "mup" else None
        self.qkv = nn.Linear(shape.d_model, 3 * shape.d_model)  # fused Q, K, V: one matmul
        self.proj = nn.Linear(shape.d_model, shape.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        # (batch, seq, width) -> (batch, heads, seq, head_dim)
        q, k, v = (t.view(batch, seq, self.n_head, width // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).contiguous().view(batch, seq, width))


class MLP(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.fc = nn.Linear(shape.d_model, shape.d_ff)
        self.proj = nn.Linear(shape.d_ff, shape.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(shape.d_model)
        self.attn = CausalSelfAttention(shape)
        self.ln_mlp = nn.LayerNorm(shape.d_model)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class GPT(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.d_model)
        self.position_embedding = nn.Embedding(shape.seq_len, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_final = nn.LayerNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        if shape.tied_embeddings:
            self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        # GPT-2 (Radford et al. 2019, Sec. 2.3): scale the residual projections by 1/sqrt(N),
        # N = 2 * n_layer residual additions; 12 layers -> std 0.02 / sqrt(24) = 0.0041.
        residual_std = 0.02 / math.sqrt(2 * shape.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)
        scale_init_(self, shape)  # mup: hidden weights x 1/sqrt(m); no draws, so m = 1 changes nothing
        self.output_multiplier = shape.output_multiplier

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Unique parameters (a tied table counts once), = shape.param_counts()["total"]."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (batch, seq) token ids -> logits (batch, seq, vocab) and mean cross-entropy (nats)."""
        seq = idx.size(1)
        if seq > self.shape.seq_len:
            raise ValueError(f"input length {seq}: must be <= seq_len={self.shape.seq_len}")
        positions = torch.arange(seq, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_final(x))
        if self.output_multiplier != 1.0:  # mup's 1/m (TP5 Table 8: the readout multiplier)
            logits = logits * self.output_multiplier
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss
