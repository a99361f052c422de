"""GPT: causal, correctly scaled attention, GPT-2 initialisation, tied embeddings, loss at init."""

import math

import pytest
import torch
import torch.nn.functional as F

from scaling_orchestrator.models.gpt import GPT
from scaling_orchestrator.models.shape import ModelShape

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
    untied = GPT(
        ModelShape(n_layer=2, d_model=32, n_head=4, vocab_size=64, seq_len=16, tied_embeddings=False)
    )
    assert untied.lm_head.weight is not untied.token_embedding.weight
    assert untied.num_params() - tied.num_params() == 64 * 32


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="seq_len=16"):
        GPT(SHAPE)(torch.zeros(1, 17, dtype=torch.long))


MUP = dict(parametrization="mup", base_d_model=32)


def test_mup_at_its_base_width_is_the_standard_model():
    # m = 1: same draws, same attention, same logits, and the same optimizer groups' lrs
    standard, base = (
        ModelShape(n_layer=2, d_model=32, n_head=4, vocab_size=64, seq_len=16, **extra) for extra in ({}, MUP)
    )
    torch.manual_seed(0)
    a = GPT(standard)
    torch.manual_seed(0)
    b = GPT(base)
    idx = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(a(idx)[0], b(idx)[0], rtol=1e-6, atol=1e-6)


def test_mup_scales_hidden_init_attention_and_logits_by_the_width_multiplier():
    shape = ModelShape(
        n_layer=2,
        d_model=256,
        n_head=2,
        vocab_size=64,
        seq_len=16,
        base_d_model=32,
        base_head_dim=16,
        parametrization="mup",
    )  # m = 8; heads of 128 on a base of 16
    torch.manual_seed(0)
    model = GPT(shape)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert model.blocks[0].attn.proj.weight.std().item() == pytest.approx(
        0.02 / math.sqrt(4) / math.sqrt(8), rel=0.03
    )
    assert model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.02)  # input: unchanged
    attn = model.blocks[0].attn
    x = torch.randn(1, 16, 256)
    q, k, v = (t.view(1, 16, 2, 128).transpose(1, 2) for t in attn.qkv(x).split(256, dim=2))
    scores = q @ k.transpose(-1, -2) * (4 / 128)  # sqrt(base head 16) / d_head 128, not 1/sqrt(128)
    scores = scores.masked_fill(torch.triu(torch.ones(16, 16, dtype=torch.bool), 1), float("-inf"))
    y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(1, 16, 256)
    torch.testing.assert_close(attn(x), attn.proj(y), atol=1e-5, rtol=1e-5)
    idx = torch.randint(0, 64, (1, 16))
    hidden = model.ln_final(
        model.blocks[1](
            model.blocks[0](model.token_embedding(idx) + model.position_embedding(torch.arange(16)))
        )
    )
    torch.testing.assert_close(model(idx)[0], model.lm_head(hidden) / 8)


def test_mup_optimizer_divides_hidden_lrs_and_keeps_the_schedule_one_number():
    from scaling_orchestrator.models.mup import MuAdamW, make_optimizer

    shape = ModelShape(n_layer=1, d_model=128, n_head=4, vocab_size=64, seq_len=8, **MUP)  # m = 4
    model = GPT(shape)
    optimizer = make_optimizer(model, shape, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
    assert isinstance(optimizer, MuAdamW)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert by_param[id(model.blocks[0].mlp.fc.weight)]["lr_multiplier"] == 0.25
    assert by_param[id(model.token_embedding.weight)]["lr_multiplier"] == 1.0
    assert by_param[id(model.blocks[0].mlp.fc.bias)]["weight_decay"] == 0.0
    # one Adam step moves each coordinate by about lr x multiplier (Adam's first step is sign(g))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))[1].backward()
    for group in optimizer.param_groups:
        group["lr"], group["weight_decay"] = 1e-2, 0.0  # as the loop writes the schedule's lr
    optimizer.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    assert moved["blocks.0.mlp.fc.weight"] == pytest.approx(2.5e-3, rel=0.01)
    assert moved["token_embedding.weight"] == pytest.approx(1e-2, rel=0.01)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-2}  # restored after the step
