"""GPT: causal, correctly scaled attention, GPT-2 initialisation, tied embeddings, loss at init."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.gpt import GPT
from models.shape import ModelShape

SHAPE = ModelShape(n_layer=2, d_model=32, n_head=4, vocab_size=64, seq_len=16)


def test_forward_shapes_and_initial_loss_near_uniform():
    torch.manual_seed(0)
    model = GPT(SHAPE)
    idx, targets = torch.randint(0, 64, (2, 3, 16))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 16, 64)
    # Small init (std 0.02) gives near-uniform predictions: loss ~ ln 64 = 4.159 nats.
    assert abs(loss.item() - math.log(64)) < 0.05
    assert model(idx)[1] is None


def test_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(SHAPE)
    idx = torch.randint(0, 64, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 64
    before, after = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_attention_matches_explicit_softmax_with_inverse_sqrt_dk():
    torch.manual_seed(0)
    attn = GPT(SHAPE).blocks[0].attn
    x = torch.randn(2, 16, 32)
    q, k, v = attn.qkv(x).split(32, dim=2)
    q, k, v = (t.view(2, 16, 4, 8).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(torch.triu(torch.ones(16, 16, dtype=torch.bool), 1), float("-inf"))
    y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(2, 16, 32)
    torch.testing.assert_close(attn(x), attn.proj(y), atol=1e-5, rtol=1e-5)


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    shape = ModelShape(n_layer=8, d_model=256, n_head=4, vocab_size=512, seq_len=32)
    model = GPT(shape)
    # 0.02 / sqrt(2 * 8) = 0.005 for the two residual projections of each block.
    proj_std = torch.cat([b.attn.proj.weight.flatten() for b in model.blocks]).std().item()
    assert proj_std == pytest.approx(0.005, rel=0.02)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.blocks[0].attn.qkv.bias.abs().max().item() == 0.0


def test_tied_and_untied_heads():
    tied = GPT(SHAPE)
    assert tied.lm_head.weight is tied.token_embedding.weight
    untied = GPT(ModelShape(n_layer=2, d_model=32, n_head=4, vocab_size=64, seq_len=16, tied_embeddings=False))
    assert untied.lm_head.weight is not untied.token_embedding.weight
    assert untied.num_params() - tied.num_params() == 64 * 32


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="seq_len=16"):
        GPT(SHAPE)(torch.zeros(1, 17, dtype=torch.long))
