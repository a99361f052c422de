"""The llama block: exact counts and FLOPs over random shapes of both blocks (with and without
grouped-query attention, QK-norm and tied embeddings), its forward, and its μP limit."""

import random

import pytest
import torch

from scaling_orchestrator.models.build import build_model
from scaling_orchestrator.models.llama import Llama, rotary_tables
from scaling_orchestrator.models.shape import ModelShape


def random_shapes(count: int, seed: int = 0) -> list[ModelShape]:
    rng = random.Random(seed)
    shapes = []
    for _ in range(count):
        n_head = rng.choice([1, 2, 4, 6])
        head_dim = rng.choice([2, 4, 8])
        block = rng.choice(["gpt2", "llama"])
        fields = {"tied_embeddings": rng.random() < 0.5}
        if block == "llama":
            fields.update(
                n_kv_heads=rng.choice([0] + [k for k in range(1, n_head + 1) if n_head % k == 0]),
                qk_norm=rng.random() < 0.5,
                ffn_multiple_of=rng.choice([1, 8, 64]),
                d_ff=rng.choice([0, 0, 24]),
            )
        shapes.append(ModelShape(n_layer=rng.randint(1, 3), d_model=n_head * head_dim, n_head=n_head,
                                 vocab_size=rng.randint(5, 70), seq_len=rng.randint(1, 12), block=block,
                                 **fields))
    return shapes


# Every option at least once, whatever the draws: GQA with QK-norm tied, multi-query untied.
FIXED = [
    ModelShape(n_layer=2, d_model=24, n_head=6, n_kv_heads=2, qk_norm=True, tied_embeddings=True,
               vocab_size=33, seq_len=7, block="llama"),
    ModelShape(n_layer=1, d_model=16, n_head=4, n_kv_heads=1, vocab_size=20, seq_len=5, block="llama"),
]


def _name(s: ModelShape) -> str:
    return f"{s.block}-{s.n_layer}x{s.d_model}-kv{s.kv_heads}-qk{int(s.qk_norm)}-tied{int(s.tied_embeddings)}"


@pytest.mark.parametrize("shape", random_shapes(14) + FIXED, ids=_name)
def test_counts_and_flops_equal_the_module_and_a_counted_forward(shape):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(shape)
    counts = shape.param_counts()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts.get("head", 0) == (0 if shape.tied_embeddings else model.lm_head.weight.numel())
    idx = torch.zeros(1, shape.seq_len, dtype=torch.long)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx)
    # The counter sees matmuls: App. F less the embedding lookup and the softmax (tests/test_shape.py).
    t, v, d, h = shape.seq_len, shape.vocab_size, shape.d_model, shape.n_head
    uncounted = 2 * t * v * d + shape.n_layer * 3 * h * t * t
    assert counter.get_total_flops() == shape.forward_flops_per_sequence() - uncounted


def test_llama_2_7b_count_and_defaults():
    shape = ModelShape(n_layer=32, d_model=4096, n_head=32, vocab_size=32000, seq_len=4096, block="llama",
                       ffn_multiple_of=256)
    assert shape.d_ff == 11008 and not shape.tied_embeddings
    assert shape.param_counts()["total"] == 6_738_415_616
    assert ModelShape(n_layer=1, d_model=128, n_head=4, block="llama").d_ff == 384  # 341.3 up to 64
    gqa = ModelShape(n_layer=1, d_model=128, n_head=4, n_kv_heads=2, block="llama", seq_len=8)
    mha = ModelShape(n_layer=1, d_model=128, n_head=4, block="llama", seq_len=8)
    assert mha.param_counts()["total"] - gqa.param_counts()["total"] == 2 * 128 * 64  # K, V half as wide
    assert mha.forward_flops_per_sequence() - gqa.forward_flops_per_sequence() == 2 * 8 * 2 * 128 * 64


@pytest.mark.parametrize("fields, named", [
    ({"block": "bert"}, "ModelShape.block='bert'"),
    ({"n_kv_heads": 2}, "ModelShape.n_kv_heads=2: applies to block 'llama'"),
    ({"qk_norm": True}, "ModelShape.qk_norm=True: applies to block 'llama'"),
    ({"block": "llama", "n_kv_heads": 3}, "ModelShape.n_kv_heads=3: must be a divisor of n_head=4"),
    ({"block": "llama", "rope_theta": 0.5}, "ModelShape.rope_theta=0.5"),
    ({"block": "llama", "ffn_multiple_of": 0}, "ModelShape.ffn_multiple_of=0"),
])
def test_bad_llama_fields_name_the_field(fields, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        ModelShape(**{"n_layer": 1, "d_model": 32, "n_head": 4, **fields})


def test_gpt2_default_keeps_its_fields_and_dict():
    shape = ModelShape(n_layer=2, d_model=64, n_head=4)
    assert shape.tied_embeddings is True and shape.d_ff == 256 and shape.block == "gpt2"
    assert ModelShape(**{**shape.__dict__}) == shape


def test_causal_rotary_and_gqa_forward():
    torch.manual_seed(0)
    shape = ModelShape(n_layer=2, d_model=32, n_head=4, n_kv_heads=2, qk_norm=True, vocab_size=50,
                       seq_len=10, block="llama")
    model = Llama(shape)
    idx = torch.randint(0, 50, (2, 10))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 10, 50) and abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.3
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 50
    assert torch.allclose(model(changed)[0][:, :6], logits[:, :6], atol=1e-6)
    cos, sin = rotary_tables(shape, 10, "cpu")
    assert cos.shape == (10, 1, 8)
    assert torch.equal(cos[0, 0], torch.ones(8)) and torch.equal(sin[0, 0], torch.zeros(8))
    names = {n for n, _ in model.named_parameters()}
    assert "position_embedding.weight" not in names and not any(n.endswith(".bias") for n in names)


def test_mup_llama_at_its_base_width_is_the_standard_model():
    fields = {"n_layer": 2, "d_model": 32, "n_head": 4, "vocab_size": 40, "seq_len": 8, "block": "llama"}
    torch.manual_seed(3)
    standard = Llama(ModelShape(**fields))
    torch.manual_seed(3)
    mup = Llama(ModelShape(**fields, parametrization="mup", base_d_model=32))
    idx = torch.randint(0, 40, (1, 8))
    assert torch.equal(standard(idx)[0], mup(idx)[0])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kv, qk", [(0, False), (2, True)])
def test_memory_model_counts_what_a_block_saves(dtype, kv, qk):
    """models/memory.py's llama layer term against autograd's saved tensors of one block (less
    its weights and the shared rotary tables, which are not per token)."""
    from scaling_orchestrator.models.memory import layer_activation_bytes

    shape = ModelShape(n_layer=1, d_model=64, n_head=4, n_kv_heads=kv, qk_norm=qk, vocab_size=32,
                       seq_len=64, block="llama")
    model = Llama(shape)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    x = model.token_embedding(torch.randint(0, 32, (2, 64)))
    cos, sin = rotary_tables(shape, 64, "cpu")
    tables = {t.untyped_storage().data_ptr() for t in (cos, sin)}
    saved: dict[int, int] = {}

    def pack(t):
        if not t.requires_grad or t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
        model.blocks[0](x, cos, sin)
    casts = 2 * sum(p.numel() for p in model.blocks[0].parameters() if p.dim() == 2)  # bf16 weight copies
    measured = sum(n for ptr, n in saved.items() if ptr not in tables) - (casts if dtype == "bfloat16" else 0)
    assert measured == layer_activation_bytes(shape, 128, dtype)
