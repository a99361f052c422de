"""Per-step training curves: train loss, learning rate, gradient norm, tokens/s and MFU every
few optimizer steps, handed to a sink in batches (the orchestrator's sink writes the trial's
`_curves/<trial_id>.parquet`, scaling_orchestrator.orchestrator.store.curves).

A point is recorded every `every_steps` optimizer steps (TrainConfig.log_every_steps: about
100 points per run, at least one every 20 steps) and at any step whose loss is not finite, so a
divergence is on the curve at its own step. Its tokens/s is measured over the steps since the
last point, counting training steps only (evaluations excluded), like Measurement's.

Cost: add() on an unrecorded step is a counter and a clock read; a recorded step turns the
loss and the gradient norm into floats (the loss is a float already: the loop reads it every
step) and appends a dict. Points reach the sink only at flush(), which the loop triggers just
before each evaluation is reported, so the file is written once per evaluation, not per point.

MFU (model FLOPs utilisation, PaLM App. B): flops_per_token (exact, ModelShape.flops_per_token)
x tokens/s / (the device's peak dense bf16 FLOP/s x ranks). The peaks are the vendors' data-sheet
figures for known GPUs (PEAK_BF16_FLOPS, stated as such, not measured); on CPU or an unlisted
GPU the MFU is None. Worked number: a 124M-param GPT at 8.5e8 FLOPs/token doing 4e5 tokens/s on
one H100 SXM: 8.5e8 x 4e5 / 9.89e14 = 34%.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

CURVE_FIELDS = ("step", "tokens", "train_loss", "lr", "grad_norm", "tokens_per_second", "mfu")

# Dense (no 2:4 sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, FLOP/s per GPU (the
# figures of bench/gpu_check_lib.py's table), matched against torch.cuda.get_device_name() in this
# order: the more specific first ("H100 PCIe" before "H100", "L40S" before "L40" before "L4").
PEAK_BF16_FLOPS = (
    ("B200", 2.25e15),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM5: "NVIDIA H100 80GB HBM3"
    ("H200", 989e12),  # the H100's compute (GH200 too), more and faster memory
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("A10G", 125e12),  # the A10's data-sheet figure; AWS's A10G may clock lower
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """The data-sheet peak of a GPU named like torch.cuda.get_device_name(), None if unknown."""
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


def device_peak_flops(device: str) -> float | None:
    """The peak of `device` ("cuda", "cuda:1"); None on CPU."""
    if not device.startswith("cuda"):
        return None
    # torch is already loaded by the loop that calls this; models stays importable without CUDA
    import torch

    return peak_bf16_flops(torch.cuda.get_device_name(torch.device(device)))


def log_every_steps(total_steps: int, batch_tokens: int, log_every_tokens: int = 0) -> int:
    """Steps between curve points: log_every_tokens // batch_tokens (at least 1), or with 0 about
    100 points per run and at least one every 20 steps: 1,000 steps -> 10, 50,000 -> 20, 60 -> 1."""
    if log_every_tokens:
        return max(1, log_every_tokens // batch_tokens)
    return min(20, max(1, round(total_steps / 100)))


class CurveRecorder:
    """Collects curve points during a run; flush() hands them to sink(list of point dicts).

    With sink None (no one listening, or a rank other than 0) every call returns at once."""

    def __init__(self, sink: Callable[[list[dict]], None] | None, *, every_steps: int, batch_tokens: int,
                 flops_per_token: float, peak_flops: float | None = None, world_size: int = 1):
        self.sink = sink
        self.every_steps = max(1, int(every_steps))
        self.batch_tokens = batch_tokens
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops * world_size if peak_flops else None
        self.points: list[dict] = []
        self._seconds = 0.0  # training time since the last point
        self._steps = 0

    @classmethod
    def for_run(cls, sink, config, device: str, flops_per_token: float, replica) -> CurveRecorder:
        """The recorder of one loop run (TrainConfig config, training.distributed.Replica replica):
        the sink is used on the primary rank only (every rank holds the same losses)."""
        sink = sink if replica.primary else None
        return cls(sink, every_steps=config.log_every_steps, batch_tokens=config.batch_tokens,
                   flops_per_token=flops_per_token, world_size=replica.world_size,
                   peak_flops=device_peak_flops(device) if sink else None)

    def add(self, step: int, loss: float, lr: float, grad_norm, step_start: float) -> None:
        """Optimizer step `step` (1-based: the step just taken) has ended; step_start is its
        time.perf_counter() start; grad_norm a float, a 0-d tensor or None."""
        if self.sink is None:
            return
        self._seconds += time.perf_counter() - step_start
        self._steps += 1
        if step % self.every_steps and math.isfinite(loss):
            return
        rate = self._steps * self.batch_tokens / max(self._seconds, 1e-9)
        self.points.append({
            "step": step,
            "tokens": step * self.batch_tokens,
            "train_loss": float(loss),
            "lr": float(lr),
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "tokens_per_second": rate,
            "mfu": self.flops_per_token * rate / self.peak_flops if self.peak_flops else None,
        })
        self._seconds, self._steps = 0.0, 0

    def flush(self) -> None:
        """Hand the points so far to the sink (one batch) and start a new batch."""
        if self.sink is not None and self.points:
            points, self.points = self.points, []
            self.sink(points)

    def before(self, on_eval):
        """on_eval, with this recorder flushed before each call: the curve up to an evaluation is
        in the sink before the evaluation is reported (and its checkpoint promoted)."""

        def flushed(measurement, checkpoint_dir):
            self.flush()
            if on_eval is not None:
                on_eval(measurement, checkpoint_dir)

        return flushed
