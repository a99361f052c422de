"""Data parallelism for scaling_orchestrator.models.training.loop: which replica this process is, its share of
the work,
and the few collectives the loop needs. Plain torch.distributed (no Ray).

The loop runs data-parallel whenever a process group of more than one rank is initialized
before it is called: Ray Train's TorchTrainer does that on every worker (gloo on CPU, nccl on
GPU); under torchrun, call init_process_group (and torch.cuda.set_device(LOCAL_RANK)) first.
Each optimizer step's global batch is drawn exactly as on one process and rank r of W takes
the r-th contiguous 1/W of its rows, so a run's data and its token and FLOP counts do not
depend on W. Worked example: batch_tokens 8,192 at seq_len 128 is 64 rows; on 4 ranks each
takes 16 rows, and micro_batch_tokens 1,024 (8 rows) makes that 2 accumulation passes per rank.
DDP averages the ranks' gradients (equal shares, so the mean of the rank means is the global
mean), and it does so once per step: the passes before a rank's last one run under no_sync.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Replica:
    """This process's place in the data-parallel group (rank 0 of 1 without a process group)."""

    rank: int = 0
    world_size: int = 1

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @property
    def primary(self) -> bool:
        """Rank 0: the one that writes checkpoints."""
        return self.rank == 0


def current_replica() -> Replica:
    if dist.is_available() and dist.is_initialized():
        return Replica(rank=dist.get_rank(), world_size=dist.get_world_size())
    return Replica()


def share(n: int, replica: Replica) -> slice:
    """Rank r's contiguous share of n items, [n r / W, n (r + 1) / W): 15 eval windows on 2
    ranks -> 0..6 and 7..14. The shares tile 0..n, so sums over them add up to the whole."""
    return slice(n * replica.rank // replica.world_size, n * (replica.rank + 1) // replica.world_size)


def local_device(device: str, replica: Replica) -> str:
    """ "cuda" on a multi-rank group means this rank's GPU: the one the launcher made current
    (Ray Train sets it on each worker before the loop starts)."""
    if device == "cuda" and replica.parallel:
        return f"cuda:{torch.cuda.current_device()}"
    return device


def wrap(model: torch.nn.Module, device: str, replica: Replica) -> DistributedDataParallel | None:
    """DDP around model on a multi-rank group (its constructor broadcasts rank 0's weights,
    so every rank starts identical even if they were built differently); None on one rank."""
    if not replica.parallel:
        return None
    index = torch.device(device).index
    return DistributedDataParallel(model, device_ids=[index] if index is not None else None)


def no_sync(ddp: DistributedDataParallel | None, last: bool):
    """Skip DDP's gradient all-reduce on every accumulation pass but the step's last one:
    the gradients accumulate locally and are averaged across ranks once."""
    if ddp is None or last:
        return contextlib.nullcontext()
    return ddp.no_sync()


def mean_loss(local: torch.Tensor, replica: Replica) -> float:
    """The step's loss averaged over ranks, the same float on every rank.

    One all-reduce carries the loss and a non-finite flag. A NaN or inf on any rank already
    makes the sum non-finite; the flag makes every rank's stop decision rest on a count, not
    on how a backend's reduction treats NaN, so all ranks stop at the same step.
    """
    if not replica.parallel:
        return float(local)
    local = local.detach().double().reshape(())
    packed = torch.stack([local, (~torch.isfinite(local)).double()])
    dist.all_reduce(packed)
    total, nonfinite = packed.tolist()
    mean = total / replica.world_size
    return math.nan if nonfinite and math.isfinite(mean) else mean


def sum_over_ranks(values: tuple[float, ...], replica: Replica, device) -> tuple[float, ...]:
    """Element-wise float64 sum of values over ranks (identity on one rank)."""
    if not replica.parallel:
        return values
    packed = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    return tuple(packed.tolist())


def barrier(replica: Replica, device) -> None:
    """Wait for every rank (an all-reduce of one number: the same call on gloo and nccl)."""
    if replica.parallel:
        dist.all_reduce(torch.zeros(1, device=device))
