"""μP's coordinate check (Yang et al. 2022, TP5 Sec. D.1): after a few Adam steps every layer's
mean |x| stays flat across widths under μP and grows with width under the standard
parametrization; and the training loop trains (and resumes) a μP model with its lr multipliers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scaling_orchestrator.models.coord_check import coord_check, width_slopes
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.loop import TrainConfig, batch_at, train

WIDTHS = (32, 64, 128, 256)  # 8x, heads of 16
STEPS = 4
LR = 3e-3


def _shapes(parametrization: str, **block) -> list[ModelShape]:
    extra = {"parametrization": "mup", "base_d_model": WIDTHS[0]} if parametrization == "mup" else {}
    return [
        ModelShape(n_layer=2, d_model=w, n_head=w // 16, vocab_size=256, seq_len=32, **extra, **block)
        for w in WIDTHS
    ]


@pytest.fixture(scope="module")
def coords(pydoc_bytes):
    # text, not random ids: the check assumes gradients that agree across steps (Yang et al. use
    # WikiText-2); 8 rows of 32 bytes from the pydoc corpus
    tokens = batch_at(pydoc_bytes.train, 32, 8, seed=0, step=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        coords = {p: coord_check(_shapes(p), steps=STEPS, lr=LR, tokens=tokens) for p in ("standard", "mup")}
        # the llama block with grouped-query attention (2 query heads a key/value head) and QK-norm
        llama = {"block": "llama", "n_kv_heads": 0, "qk_norm": True}
        return coords | {
            f"llama-{p}": coord_check(
                [dataclasses.replace(s, n_kv_heads=s.n_head // 2) for s in _shapes(p, **llama)],
                steps=STEPS, lr=LR, tokens=tokens,
            )
            for p in ("standard", "mup")
        }
    finally:
        torch.set_num_threads(threads)


def test_coord_check_at_init_is_flat_in_both(coords):
    # Before any step the two are one model at the base width and differ only by init above it:
    # LayerNorm outputs and the input table are O(1) per coordinate either way.
    for rows in coords.values():
        slopes = width_slopes(rows, 0)
        assert abs(slopes["embedding"]) < 0.1 and abs(slopes["ln_final"]) < 0.1


@pytest.mark.parametrize("block", ["", "llama-"])
def test_coord_check_mup_flat_standard_grows(coords, block):
    mup = width_slopes(coords[f"{block}mup"], STEPS)
    standard = width_slopes(coords[f"{block}standard"], STEPS)
    hidden = [k for k in mup if k.startswith("block")]
    # Measured (widths 32..256, lr 3e-3, 4 steps): standard slopes 0.9..1.7 on the block outputs
    # (Adam's update is width-independent per coordinate, so the change of W x grows like its
    # fan-in) and 0.77 on the logits; mup within -0.14..+0.17 (at lr 1e-2 its narrowest widths
    # drift further, finite-width effects of a hotter run). llama (GQA, QK-norm): standard 0.97..2.41,
    # mup -0.12..+0.19.
    for layer in hidden + ["logits"]:
        assert abs(mup[layer]) < 0.3, (layer, mup[layer])
        assert standard[layer] > 0.6, (layer, standard[layer])


def test_coord_check_at_the_base_width_is_identical(coords):
    at_base = {
        p: [(r["t"], r["layer"], r["mean_abs"]) for r in rows if r["d_model"] == WIDTHS[0]]
        for p, rows in coords.items()
    }
    assert [r[:2] for r in at_base["mup"]] == [r[:2] for r in at_base["standard"]]
    assert [r[2] for r in at_base["mup"]] == pytest.approx([r[2] for r in at_base["standard"]], rel=1e-5)


def test_training_loop_uses_the_mup_multipliers_and_resumes(pydoc_bytes, tmp_path):
    shape = ModelShape(
        n_layer=2, d_model=64, n_head=4, vocab_size=256, seq_len=32, parametrization="mup", base_d_model=16
    )
    config = TrainConfig(
        total_tokens=16 * 512,
        batch_tokens=512,
        eval_every_tokens=8 * 512,
        eval_tokens=1024,
        threads=1,
        device="cpu",
        lr=1e-2,
    )
    straight = []
    train(
        shape, config, pydoc_bytes, on_eval=lambda m, ckpt: straight.append(m), checkpoint_dir=str(tmp_path)
    )
    assert straight[-1].status == "ok" and straight[-1].val_loss < straight[0].val_loss < 5.5
    resumed = []

    class Stop(Exception):
        pass

    def stop_at_8(m, ckpt):
        if m.step == 8:
            raise Stop

    with pytest.raises(Stop):
        train(shape, config, pydoc_bytes, on_eval=stop_at_8, checkpoint_dir=str(tmp_path / "b"))
    train(
        shape, config, pydoc_bytes, on_eval=lambda m, ckpt: resumed.append(m), resume_from=str(tmp_path / "b")
    )
    assert resumed[-1].val_loss == straight[-1].val_loss  # the multipliers travel in the checkpoint
