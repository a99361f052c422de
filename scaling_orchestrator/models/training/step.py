"""One optimizer step, one held-out evaluation, and the optimizer, device and input checks the
training loop (loop.py) sets up with: the pieces of a step, apart from the loop's bookkeeping."""

from __future__ import annotations

import math

import torch

from scaling_orchestrator.models.data.tokens import TokenData
from scaling_orchestrator.models.mup import make_optimizer as make_mup_optimizer
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig, rows_per_rank
from scaling_orchestrator.models.training.distributed import Replica, mean_loss, no_sync, sum_over_ranks


def optimizer_step(
    model, optimizer, batch: torch.Tensor, micro_rows: int, autocast, grad_clip: float, ddp, replica: Replica
) -> tuple[float, torch.Tensor | None]:
    """Accumulate gradients over micro-batches, clip, step: (the global batch's mean loss, the
    grad norm clipping measured, a tensor left unsynced, or None without clipping).

    A non-finite loss (on any rank: the mean is all-reduced) skips the update on every rank
    (the run is over; nothing is worth applying).
    """
    rows, loss = len(batch), 0.0
    for start in range(0, rows, micro_rows):
        chunk = batch[start : start + micro_rows]
        with no_sync(ddp, last=start + micro_rows >= rows):
            with autocast:
                _, micro_loss = model(chunk[:, :-1], chunk[:, 1:])
            (micro_loss * (len(chunk) / rows)).backward()  # each micro-batch's share of the batch mean
        loss += micro_loss.detach() * (len(chunk) / rows)
    loss, norm = mean_loss(loss, replica), None
    if math.isfinite(loss):
        if grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(optimizer_params(optimizer), grad_clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, norm


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: torch.Tensor, rows: int, autocast, replica: Replica) -> float:
    """Mean next-token cross-entropy (nats) over the fixed held-out windows (this rank's share
    of them; the sums are all-reduced). model is never the DDP wrapper: no collective inside."""
    total, count = 0.0, 0
    for start in range(0, len(windows), rows):
        chunk = windows[start : start + rows]
        with autocast:
            _, loss = model(chunk[:, :-1], chunk[:, 1:])
        total += float(loss) * chunk[:, 1:].numel()
        count += chunk[:, 1:].numel()
    total, count = sum_over_ranks((total, count), replica, windows.device)
    return total / count


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: str) -> torch.optim.AdamW:
    """AdamW; decay only matrices (weights, embeddings), not biases or LayerNorm gains (nanoGPT).
    Under mup (model.shape.parametrization) the hidden matrices' group carries lr_multiplier 1/m,
    applied inside each step (scaling_orchestrator.models.mup.MuAdamW), so the schedule's one lr stays
    per-group."""
    return make_mup_optimizer(
        model,
        model.shape,
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=(config.beta1, config.beta2),
        fused=device.startswith("cuda"),
    )


def resolve_device(config: TrainConfig) -> str:
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device='cuda': no CUDA device is visible; use 'cpu' or 'auto'")
    return device


def check_inputs(shape: ModelShape, config: TrainConfig, data: TokenData, replica: Replica) -> None:
    for name in ("batch_tokens", "micro_tokens"):
        value = getattr(config, name)
        if value % shape.seq_len:
            raise ValueError(f"TrainConfig.{name}={value}: must be a multiple of seq_len={shape.seq_len}")
    rows_per_rank(config.batch_tokens, shape.seq_len, replica.world_size)
    if data.vocab_size > shape.vocab_size:
        raise ValueError(
            f"ModelShape.vocab_size={shape.vocab_size}: must be >= the data's vocab_size {data.vocab_size}"
        )
    if len(data.train) <= shape.seq_len:
        raise ValueError(f"data.train has {len(data.train)} tokens: needs more than seq_len={shape.seq_len}")
