"""The training loop: plain PyTorch, one process or data-parallel, no Ray (the orchestrator wraps it).

AdamW (weight decay on 2-D weights only), warmup then cosine / warmup-stable-decay / constant
learning rate, gradient clipping, gradient accumulation from micro_batch_tokens up to
batch_tokens, and an evaluation on a fixed held-out slice every eval_every_tokens and at the
last step. Each optimizer step's batch is a pure function of (seed, step), so the data position
IS the step: a run stopped at step k and resumed from its checkpoint gives bitwise-identical
losses on CPU. The same holds across runs: a branch started from a constant-LR trunk's
checkpoint at step s (start_from; the trunk evaluates and checkpoints at eval_at_tokens)
continues exactly as one run of the branch's schedule would from step s. Worked example: batch
16 rows x 128 tokens = 2,048 batch_tokens; with micro_batch_tokens 512 that is 4 forward/backward
passes of 4 rows per optimizer step. Per-step curve points go to on_curve (training/curves.py).

Data-parallel (scaling_orchestrator.models.training.distributed): when a process group of W > 1
ranks is initialized, the model is wrapped in DistributedDataParallel and rank r trains on the
r-th 1/W of each step's global batch (the same rows one process would draw), so batch_tokens,
tokens and flops stay global counts and the losses match a one-process run up to float rounding. Every rank
- reports the same train_loss (all-reduced mean) and stops on the same step when it diverges;
- evaluates its contiguous share of the held-out windows, and the (loss sum, token count)
  pairs are all-reduced, so val_loss is the whole slice's mean on every rank at 1/W the cost;
- calls on_eval with the same losses (timings are its own clock), since a caller may need
  every rank at each evaluation (Ray Train's report is a barrier); only rank 0 writes the
  checkpoint and passes its directory, other ranks pass None. To resume, every rank loads the
  same checkpoint (its data position is global, so W may even change across a resume).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scaling_orchestrator.models.build import build_model
from scaling_orchestrator.models.data.tokens import TokenData
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.checkpoint import load_checkpoint, save_checkpoint
from scaling_orchestrator.models.training.config import Measurement, TrainConfig, lr_at, rows_per_rank
from scaling_orchestrator.models.training.curves import CurveRecorder
from scaling_orchestrator.models.training.distributed import (
    Replica,
    barrier,
    current_replica,
    local_device,
    share,
    wrap,
)
from scaling_orchestrator.models.training.step import (
    check_inputs,
    evaluate,
    make_optimizer,
    optimizer_step,
    resolve_device,
)

__all__ = ["Measurement", "TrainConfig", "lr_at", "train", "batch_at"]


def batch_at(
    tokens: np.ndarray, seq_len: int, rows: int, seed: int, step: int, *, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """(rows, seq_len + 1) windows at offsets drawn by np.random.default_rng([seed, step]);
    rank r of world_size gets the r-th contiguous rows // world_size of them."""
    offsets = np.random.default_rng([seed, step]).integers(0, len(tokens) - seq_len, size=rows)
    offsets = offsets[share(rows, Replica(rank=rank, world_size=world_size))]
    windows = tokens[offsets[:, None] + np.arange(seq_len + 1)]
    return torch.from_numpy(windows.astype(np.int64))


def eval_windows(val: np.ndarray, seq_len: int, eval_tokens: int) -> torch.Tensor:
    """The fixed held-out slice: the first eval_tokens of val as (n, seq_len + 1) windows."""
    n = min(eval_tokens, len(val) - 1) // seq_len
    if n < 1:
        raise ValueError(
            f"TrainConfig.eval_tokens={eval_tokens}: the val split ({len(val)} tokens) must "
            f"hold at least seq_len + 1 = {seq_len + 1} tokens and eval_tokens >= seq_len"
        )
    ids = np.asarray(val[: n * seq_len + 1], dtype=np.int64)
    return torch.from_numpy(np.lib.stride_tricks.sliding_window_view(ids, seq_len + 1)[::seq_len].copy())


@dataclass
class _Loop:
    """What changes during training and must survive a resume (saved as the checkpoint's "loop")."""

    step: int = 0
    loss_sum: float = 0.0  # sum of per-step train losses since the last evaluation
    loss_steps: int = 0
    wall_seconds: float = 0.0  # all segments so far, evaluations included
    last: dict | None = None  # the latest Measurement, re-reported if resumed after the last step

    def add_step(self, loss: float) -> None:
        self.step += 1
        self.loss_sum += loss
        self.loss_steps += 1

    def take_train_loss(self) -> float:
        """The mean train loss since the last evaluation; the next interval's sum starts at 0."""
        mean = self.loss_sum / self.loss_steps
        self.loss_sum, self.loss_steps = 0.0, 0
        return mean


@dataclass
class _Interval:
    """The clock since the last evaluation: tokens_per_second counts training steps only
    (train_seconds), wall_seconds counts everything from `start` (evaluations included)."""

    start: float  # time.perf_counter() seconds
    train_seconds: float = 0.0
    tokens: int = 0


@dataclass(frozen=True, eq=False)
class _Run:
    """Everything set up once per call, fixed while it trains."""

    shape: ModelShape
    config: TrainConfig
    data: TokenData
    replica: Replica
    device: str
    raw_model: torch.nn.Module  # what the checkpoint saves
    model: torch.nn.Module  # evaluates (compiled if asked); never the DDP wrapper
    train_model: torch.nn.Module  # trains: the (compiled) DDP wrapper on W > 1 ranks, else model
    ddp: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    held_out: torch.Tensor  # this rank's share of the fixed eval windows, on device
    rows: int  # global rows per optimizer step: every rank draws them, then takes its share
    micro_rows: int  # rows per forward/backward pass on this rank
    eval_every_steps: int
    flops_per_token: float
    flops_6n_per_token: float


def train(
    shape: ModelShape,
    config: TrainConfig,
    data: TokenData,
    *,
    on_eval: Callable[[Measurement, str | None], None] | None = None,
    checkpoint_dir: str | None = None,
    resume_from: str | None = None,
    start_from: str | None = None,
    on_curve: Callable[[list[dict]], None] | None = None,
) -> Measurement:
    """Train build_model(shape) on data with config; returns the final Measurement (see module doc).

    start_from (used only when resume_from is None): another run's checkpoint to continue, a
    branch from its trunk: model, optimizer, RNG and step (the data position) carry over, and
    only checkpoint.BRANCH_FIELDS (where it ends, how it decays) may differ. Its step, tokens,
    flops and wall_seconds continue the trunk's count: a branch from step 800 to 1,000 reports
    tokens = 1,000 x batch_tokens, the whole path that produced its model."""
    run, loop = _set_up(shape, config, data, resume_from, start_from)
    curve = CurveRecorder.for_run(on_curve, config, run.device, run.flops_per_token, run.replica)
    on_eval = curve.before(on_eval)
    interval = _Interval(start=time.perf_counter())
    result = Measurement(**loop.last) if loop.last else None
    if loop.step >= config.total_steps and result is not None:
        # Resumed from the final checkpoint (the run ended while reporting it): report it again.
        return _report(result, resume_from, on_eval)
    eval_at = config.eval_at_steps
    while loop.step < config.total_steps:
        step_start = time.perf_counter()
        lr_now, loss, grad_norm = _train_step(run, loop.step)
        curve.add(loop.step + 1, loss, lr_now, grad_norm, step_start)
        if not math.isfinite(loss):  # the step is not counted: its update was skipped
            loop.wall_seconds += time.perf_counter() - interval.start
            return _report(
                _measure(run, loop, interval, lr_now, math.nan, loss, "diverged", True), None, on_eval
            )
        loop.add_step(loss)
        interval.tokens += config.batch_tokens
        interval.train_seconds += time.perf_counter() - step_start
        final = loop.step == config.total_steps
        if loop.step % run.eval_every_steps and not final and loop.step not in eval_at:
            continue
        result = _evaluate_interval(run, loop, interval, lr_now, final)
        if result.status == "diverged":
            return _report(result, None, on_eval)  # no checkpoint of a broken model
        loop.last = dataclasses.asdict(result)
        _report(result, _checkpoint(run, loop, checkpoint_dir), on_eval)
        interval = _Interval(start=time.perf_counter())
    return result


def _set_up(
    shape: ModelShape,
    config: TrainConfig,
    data: TokenData,
    resume_from: str | None,
    start_from: str | None = None,
) -> tuple[_Run, _Loop]:
    """Device, seeded model and optimizer, the resumed state, the DDP wrap and the held-out windows."""
    replica = current_replica()
    device = local_device(resolve_device(config), replica)
    check_inputs(shape, config, data, replica)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    raw_model = build_model(shape).to(device)
    optimizer = make_optimizer(raw_model, config, device)
    loop = _restore(raw_model, optimizer, shape, config, data, resume_from, start_from)
    model = torch.compile(raw_model) if config.compile else raw_model
    ddp = wrap(raw_model, device, replica)  # after the resume: its constructor broadcasts rank 0's weights
    train_model = model if ddp is None else torch.compile(ddp) if config.compile else ddp
    # bf16 autocast on the run's own device type (CPU included, so a GPU spec's recipe runs in CPU
    # tests): parameters, gradients and AdamW states stay fp32, matmuls and their saved inputs
    # are bf16 (scaling_orchestrator.models.memory counts both).
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if config.dtype == "bfloat16"
        else contextlib.nullcontext()
    )
    windows = eval_windows(data.val, shape.seq_len, config.eval_tokens)
    micro_rows = min(
        config.micro_tokens // shape.seq_len,
        rows_per_rank(config.batch_tokens, shape.seq_len, replica.world_size),
    )
    return _Run(
        shape=shape,
        config=config,
        data=data,
        replica=replica,
        device=device,
        raw_model=raw_model,
        model=model,
        train_model=train_model,
        ddp=ddp,
        optimizer=optimizer,
        autocast=autocast,
        held_out=windows[share(len(windows), replica)].to(device),
        rows=config.batch_tokens // shape.seq_len,
        micro_rows=micro_rows,
        eval_every_steps=config.eval_every_steps,
        flops_per_token=shape.flops_per_token(),
        flops_6n_per_token=shape.flops_per_token_6n(),
    ), loop


def _restore(
    model,
    optimizer,
    shape: ModelShape,
    config: TrainConfig,
    data: TokenData,
    resume_from: str | None,
    start_from: str | None,
) -> _Loop:
    """The loop state to continue from: this run's own checkpoint, else a trunk's, else step 0."""
    if resume_from:
        return _Loop(
            **load_checkpoint(
                resume_from,
                model=model,
                optimizer=optimizer,
                shape=shape,
                config=config,
                fingerprint=data.fingerprint,
            )
        )
    if not start_from:
        return _Loop()
    loop = _Loop(
        **load_checkpoint(
            start_from,
            model=model,
            optimizer=optimizer,
            shape=shape,
            config=config,
            fingerprint=data.fingerprint,
            branch=True,
        )
    )
    if loop.step >= config.total_steps:
        raise ValueError(
            f"start_from={start_from!r}: the checkpoint is at step {loop.step}, not before this "
            f"run's last step {config.total_steps} (TrainConfig.total_tokens={config.total_tokens})"
        )
    # The trunk's last Measurement is not this run's; its interval sums were reset at that
    # evaluation, and its wall clock carries on (the branch's wall counts the whole path).
    loop.last = None
    return loop


def _train_step(run: _Run, step: int) -> tuple[float, float, torch.Tensor | None]:
    """Optimizer step `step` at its scheduled LR on its (seed, step) batch: (lr, global mean
    loss, the pre-clip global grad norm or None when grad_clip is 0)."""
    lr_now = lr_at(step, run.config)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_now
    batch = batch_at(
        run.data.train,
        run.shape.seq_len,
        run.rows,
        run.config.seed,
        step,
        rank=run.replica.rank,
        world_size=run.replica.world_size,
    ).to(run.device, non_blocking=True)
    loss, grad_norm = optimizer_step(
        run.train_model,
        run.optimizer,
        batch,
        run.micro_rows,
        run.autocast,
        run.config.grad_clip,
        run.ddp,
        run.replica,
    )
    return lr_now, loss, grad_norm


def _evaluate_interval(
    run: _Run, loop: _Loop, interval: _Interval, lr_now: float, final: bool
) -> Measurement:
    """The held-out loss and the interval's mean train loss at loop.step, as an "ok" Measurement,
    or as the run's final "diverged" one if either is not finite."""
    val_loss = evaluate(run.model, run.held_out, run.micro_rows, run.autocast, run.replica)
    loop.wall_seconds += time.perf_counter() - interval.start
    train_loss = loop.take_train_loss()
    if not (math.isfinite(val_loss) and math.isfinite(train_loss)):
        # Finite steps can still give a NaN/inf held-out loss (or a mean that overflows):
        # report this step once, as the run's final "diverged", never as an "ok" NaN row
        # followed by the same step as "diverged". Both losses are all-reduced, so every
        # rank takes this branch at the same step.
        return _measure(run, loop, interval, lr_now, val_loss, train_loss, "diverged", True)
    return _measure(run, loop, interval, lr_now, val_loss, train_loss, "ok", final)


def _measure(
    run: _Run,
    loop: _Loop,
    interval: _Interval,
    lr_now: float,
    val_loss: float,
    train_loss: float,
    status: str,
    final: bool,
) -> Measurement:
    tokens = loop.step * run.config.batch_tokens
    return Measurement(
        step=loop.step,
        tokens=tokens,
        flops=tokens * run.flops_per_token,
        flops_6n=tokens * run.flops_6n_per_token,
        train_loss=train_loss,
        val_loss=val_loss,
        val_bpb=val_loss / math.log(2) / run.data.bytes_per_token,
        lr_now=lr_now,
        wall_seconds=loop.wall_seconds,
        tokens_per_second=interval.tokens / max(interval.train_seconds, 1e-9),
        final=final,
        status=status,
    )


def _checkpoint(run: _Run, loop: _Loop, checkpoint_dir: str | None) -> str | None:
    """Rank 0 writes the checkpoint (all ranks hold the same weights and optimizer state);
    returns its directory there, None elsewhere or without checkpoint_dir."""
    ckpt = None
    if checkpoint_dir and run.replica.primary:
        ckpt = save_checkpoint(
            checkpoint_dir, model=run.raw_model, optimizer=run.optimizer, loop_state=loop.__dict__,
            shape=run.shape, config=run.config, fingerprint=run.data.fingerprint,
        )
    barrier(run.replica, run.device)  # so on every rank, on_eval runs once rank 0's checkpoint is in place
    return ckpt


def _report(result: Measurement, ckpt: str | None, on_eval) -> Measurement:
    on_eval(result, ckpt)  # never None: CurveRecorder.before wraps it
    return result
