"""μP, the maximal update parametrization (Yang et al. 2022, "Tensor Programs V", arXiv 2203.03466),
for the GPT of scaling_orchestrator.models.gpt trained with Adam: the rules and the optimizer (the coordinate
check
is models/coord_check.py).

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

The llama block (models/llama.py) names its modules alike (fused attn.qkv, SwiGLU's fused gate
and up in mlp.fc, its down projection mlp.proj), so the same roles hold; its RMSNorm and QK-norm
gains are vectors. Its coordinate check is in tests/test_mup_coord.py too.

At m = 1 every rule is the identity: a mup model at its base width IS the standard model (same
init draws, same forward, same updates), so an lr found there by either search carries over.
Weight decay: torch's AdamW decays by lr * weight_decay, so hidden matrices decay at 1/m of the
rate, as in mup's MuAdamW. Worked number: base 64, width 512 -> m = 8: hidden init std 0.02 /
2.83 = 0.0071, hidden lr 3e-3 / 8 = 3.75e-4, logits x 0.125.
"""

from __future__ import annotations

import math

import torch

from scaling_orchestrator.models.shape import ModelShape

HIDDEN_SUFFIXES = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")
INPUT_NAMES = ("token_embedding.weight", "position_embedding.weight")
OUTPUT_NAMES = ("lm_head.weight",)
ROLES = ("input", "hidden", "output", "vector")


def role(name: str, param: torch.Tensor) -> str:
    """The μP role of one of scaling_orchestrator.models.gpt.GPT's parameters, by its name."""
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
    return [
        {"params": groups[k], "weight_decay": weight_decay if k[0] else 0.0, "lr_multiplier": k[1]}
        for k in order
    ]


class MuAdamW(torch.optim.AdamW):
    """AdamW whose groups carry an lr_multiplier: a step uses lr * lr_multiplier. The loop writes
    the schedule's one lr into every group before each step (scaling_orchestrator.models.training.loop), so
    the multiplier
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


def make_optimizer(
    model: torch.nn.Module,
    shape: ModelShape,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW over param_groups: torch's own under standard, MuAdamW under mup."""
    cls = MuAdamW if shape.parametrization == "mup" else torch.optim.AdamW
    return cls(param_groups(model, shape, weight_decay), lr=lr, betas=betas, fused=fused)
