"""Yang et al.'s coordinate check (TP5 Sec. D.1): how each layer's output scale moves with width
after a few Adam steps, under the standard parametrization and under μP (models/mup.py).
tests/test_mup_coord.py asserts it; bench/mup.py draws it.
"""

from __future__ import annotations

import math

import torch

from scaling_orchestrator.models.build import build_model
from scaling_orchestrator.models.mup import make_optimizer
from scaling_orchestrator.models.shape import ModelShape


def layer_outputs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The modules whose outputs a coordinate check reads: the token table, each block's
    attention, MLP and residual stream (the block), and the final LayerNorm."""
    named = [("embedding", model.token_embedding)]
    for i, block in enumerate(model.blocks):
        named += [(f"block{i}.attn", block.attn), (f"block{i}.mlp", block.mlp), (f"block{i}", block)]
    return named + [("ln_final", model.ln_final)]


def coord_check(shapes: list[ModelShape], *, steps: int = 4, lr: float = 1e-2, rows: int = 8,
                seed: int = 0, tokens: torch.Tensor | None = None) -> list[dict]:
    """Yang et al.'s coordinate check (TP5 Sec. D.1; the mup package's get_coord_data): train
    each shape with Adam on one fixed batch (`tokens`, (rows, seq_len + 1) ids: text, whose
    gradients are coherent as the check assumes; else random ids) and read mean |x| of every layer's
    output (layer_outputs, and the logits) on that batch before each step t = 0 .. steps.
    Under μP the values at t >= 1 stay flat across widths; under the standard parametrization
    Adam's width-independent update size makes hidden outputs and logits grow with width.
    Returns rows {d_model, parametrization, t, layer, mean_abs}."""
    rows_out = []
    for shape in shapes:
        torch.manual_seed(seed)
        model = build_model(shape)
        batch = tokens if tokens is not None else torch.randint(
            0, shape.vocab_size, (rows, shape.seq_len + 1), generator=torch.Generator().manual_seed(seed))
        optimizer = make_optimizer(model, shape, lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
        seen: dict[str, float] = {}
        hooks = [module.register_forward_hook(lambda _m, _i, out, n=name: seen.__setitem__(n, _mean_abs(out)))
                 for name, module in layer_outputs(model)]
        for t in range(steps + 1):
            logits, loss = model(batch[:, :-1], batch[:, 1:])
            seen["logits"] = _mean_abs(logits)
            rows_out += [{"d_model": shape.d_model, "parametrization": shape.parametrization, "t": t,
                          "layer": name, "mean_abs": value} for name, value in seen.items()]
            if t < steps:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for hook in hooks:
            hook.remove()
    return rows_out


def _mean_abs(out: torch.Tensor) -> float:
    return float(out.detach().abs().mean())


def width_slopes(rows: list[dict], t: int) -> dict[str, float]:
    """Per layer, the slope of log mean|x| against log d_model at step t (0: flat across
    widths; 1: grows like the width, Adam's standard-parametrization blow-up)."""
    slopes = {}
    for layer in sorted({r["layer"] for r in rows}):
        pts = [
            (math.log(r["d_model"]), math.log(r["mean_abs"]))
            for r in rows
            if r["layer"] == layer and r["t"] == t
        ]
        n = len(pts)
        mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        slopes[layer] = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
    return slopes


__all__ = ["coord_check", "layer_outputs", "width_slopes"]
