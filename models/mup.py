"""μP, the maximal update parametrization (Yang et al. 2022, "Tensor Programs V", arXiv 2203.03466),
for the GPT of models.gpt trained with Adam: the rules, the optimizer and the coordinate check.

With m = d_model / base_d_model (ModelShape.width_multiplier), relative to the base width:

  role     parameters                                      init std        Adam lr    forward
  input    token and position tables                       sigma           eta
  hidden   attn.qkv, attn.proj, mlp.fc, mlp.proj weights   sigma / sqrt m  eta / m
  output   lm_head (the token table when tied)             sigma           eta        logits / m
  vector   biases, LayerNorm gains and biases              as standard     eta
  attention softmax(q k^T sqrt(base_head_dim) / d_head) in place of 1 / sqrt(d_head)

This is TP5's Table 8 form (the mup package's MuReadout): an output multiplier 1/m in place
of Table 3's output init sigma/m and Adam lr eta/m. The two train identically (the abc
symmetry of Sec. 5: multiplier x theta, init / theta, Adam lr / theta), and the multiplier form
lets the output share the token table, which keeps its input init and lr. Hidden init variance
1/fan_in keeps GPT-2's 1/sqrt(2 n_layer) on the residual projections (a depth rule, not a width
one). mlp.proj's fan-in is d_ff, which grows with d_model (4x), so it shares the multiplier m.

At m = 1 every rule is the identity: a mup model at its base width IS the standard model (same
init draws, same forward, same updates), so an lr found there by either search carries over.
Weight decay: torch's AdamW decays by lr * weight_decay, so hidden matrices decay at 1/m of the
rate, as in mup's MuAdamW. Worked number: base 64, width 512 -> m = 8: hidden init std 0.02 /
2.83 = 0.0071, hidden lr 3e-3 / 8 = 3.75e-4, logits x 0.125.
"""

from __future__ import annotations

import math

import torch

from models.shape import ModelShape

HIDDEN_SUFFIXES = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")
INPUT_NAMES = ("token_embedding.weight", "position_embedding.weight")
OUTPUT_NAMES = ("lm_head.weight",)
ROLES = ("input", "hidden", "output", "vector")


def role(name: str, param: torch.Tensor) -> str:
    """The μP role of one of models.gpt.GPT's parameters, by its name."""
    if name.endswith(HIDDEN_SUFFIXES):
        return "hidden"
    if name in INPUT_NAMES:
        return "input"
    if name in OUTPUT_NAMES:
        return "output"
    return "vector" if param.dim() < 2 else "input"


def init_multiplier(param_role: str, shape: ModelShape) -> float:
    """What the standard init std is multiplied by: 1/sqrt(m) for hidden weights, else 1."""
    return 1.0 / math.sqrt(shape.width_multiplier) if param_role == "hidden" else 1.0


def lr_multiplier(param_role: str, shape: ModelShape) -> float:
    """What the scheduled Adam lr is multiplied by: 1/m for hidden weights, else 1 (the output's
    1/m is in the forward, ModelShape.output_multiplier)."""
    return 1.0 / shape.width_multiplier if param_role == "hidden" else 1.0


@torch.no_grad()
def scale_init_(model: torch.nn.Module, shape: ModelShape) -> None:
    """Rescale a standard-initialised model to μP in place (draws nothing: at m = 1 a no-op)."""
    if shape.parametrization != "mup":
        return
    for name, param in model.named_parameters():
        factor = init_multiplier(role(name, param), shape)
        if factor != 1.0:
            param.mul_(factor)


def param_groups(model: torch.nn.Module, shape: ModelShape, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (nanoGPT), each group with its lr_multiplier.
    Standard: two groups (decayed matrices, undecayed vectors); mup: hidden matrices apart."""
    groups: dict[tuple[bool, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (param.dim() >= 2, lr_multiplier(role(name, param), shape))
        groups.setdefault(key, []).append(param)
    order = sorted(groups, key=lambda k: (not k[0], -k[1]))  # decayed first: the standard order
    return [{"params": groups[k], "weight_decay": weight_decay if k[0] else 0.0, "lr_multiplier": k[1]}
            for k in order]


class MuAdamW(torch.optim.AdamW):
    """AdamW whose groups carry an lr_multiplier: a step uses lr * lr_multiplier. The loop writes
    the schedule's one lr into every group before each step (models.train), so the multiplier
    lives beside it and is applied here, inside the step, and the group's lr is restored after."""

    def step(self, closure=None):
        scheduled = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * group.get("lr_multiplier", 1.0)
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, scheduled):
                group["lr"] = lr


def make_optimizer(model: torch.nn.Module, shape: ModelShape, *, lr: float, weight_decay: float,
                   betas: tuple[float, float], fused: bool = False) -> torch.optim.AdamW:
    """AdamW over param_groups: torch's own under standard, MuAdamW under mup."""
    cls = MuAdamW if shape.parametrization == "mup" else torch.optim.AdamW
    return cls(param_groups(model, shape, weight_decay), lr=lr, betas=betas, fused=fused)


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
    from models.gpt import GPT  # gpt imports this module's rules

    rows_out = []
    for shape in shapes:
        torch.manual_seed(seed)
        model = GPT(shape)
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
        pts = [(math.log(r["d_model"]), math.log(r["mean_abs"])) for r in rows if r["layer"] == layer and r["t"] == t]
        n = len(pts)
        mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        slopes[layer] = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
    return slopes


__all__ = ["MuAdamW", "ROLES", "coord_check", "init_multiplier", "layer_outputs", "lr_multiplier",
           "make_optimizer", "param_groups", "role", "scale_init_", "width_slopes"]
