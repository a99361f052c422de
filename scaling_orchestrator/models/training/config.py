"""The training recipe (TrainConfig), what the loop reports (Measurement), and the LR schedule.

Kept apart from the loop so the planner can build and check recipes without reading the loop.
Both are re-exported by scaling_orchestrator.models.training.loop, their public home.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from scaling_orchestrator.models.training.curves import log_every_steps

SCHEDULES = ("cosine", "wsd", "constant")
DECAY_SHAPES = ("linear", "1-sqrt")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16")
KEEP_WEIGHTS = ("final", "none")
EVALS_PER_RUN = 8  # evaluations of a run that gives no eval_every_tokens: a loss curve of 8 points


@dataclass(frozen=True)
class TrainConfig:
    total_tokens: int  # tokens to train on (a whole number of optimizer steps)
    batch_tokens: int  # tokens per optimizer step (multiple of seq_len)
    micro_batch_tokens: int = 0  # tokens per forward; 0 -> batch_tokens (no accumulation)
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to 10% of peak (Chinchilla, Sec. 4 / App. B)
    warmup_fraction: float = 0.05
    schedule: str = "cosine"  # "cosine" | "wsd" | "constant"
    decay_fraction: float = 0.2  # wsd only: decay over the last 20% of steps (decay_shape)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global grad norm; 0 -> no clipping
    eval_every_tokens: int = 0  # 0 -> EVALS_PER_RUN evaluations (eval_interval_tokens)
    eval_tokens: int = 16384  # fixed held-out slice size
    seed: int = 0
    threads: int = 0  # torch threads; 0 -> leave as is
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    dtype: str = "float32"
    compile: bool = False  # torch.compile (inductor; on CPU it needs a C++ compiler)
    # 0: warmup_fraction of this run's steps. A trunk and its branches share one warmup in
    # tokens (their step counts differ), so their LR paths agree up to the branch point.
    warmup_tokens: int = 0
    decay_shape: str = "linear"  # wsd only: "linear" | "1-sqrt" (Hagele et al. 2024, Sec. 3)
    # Extra evaluations (each with its checkpoint) at these token counts: a trunk's branch points.
    eval_at_tokens: tuple[int, ...] = ()
    keep_weights: str = "final"  # "final": the finished model in <results>/_weights/<trial_id>/ | "none"
    # Tokens between per-step curve points (models/training/curves.py); 0 -> about 100 points
    # per run, at least one every 20 steps. What is recorded, not what is trained: not hashed.
    log_every_tokens: int = 0

    # Fields added after trial ids were first published: orchestrator/spec/trial.py hashes them
    # only when they differ from their defaults, so every earlier trial keeps its id.
    ADDED_FIELDS: ClassVar[tuple[str, ...]] = (
        "warmup_tokens", "decay_shape", "eval_at_tokens", "keep_weights",
    )
    # What is kept or recorded of a run, not what it trains: never part of a trial's identity.
    UNHASHED_FIELDS: ClassVar[tuple[str, ...]] = ("keep_weights", "log_every_tokens")

    def __post_init__(self) -> None:
        _positive_int("total_tokens", self.total_tokens)
        _positive_int("batch_tokens", self.batch_tokens)
        if self.total_tokens % self.batch_tokens:
            raise ValueError(
                f"TrainConfig.total_tokens={self.total_tokens}: must be a whole number of "
                f"optimizer steps, a multiple of batch_tokens={self.batch_tokens}"
            )
        _non_negative_int("micro_batch_tokens", self.micro_batch_tokens)
        if self.micro_batch_tokens and self.batch_tokens % self.micro_batch_tokens:
            raise ValueError(
                f"TrainConfig.micro_batch_tokens={self.micro_batch_tokens}: must divide "
                f"batch_tokens={self.batch_tokens}, or be 0 for no accumulation"
            )
        for name, low, high in (
            ("lr", 0.0, math.inf),
            ("min_lr_ratio", 0.0, 1.0),
            ("warmup_fraction", 0.0, 1.0),
            ("decay_fraction", 0.0, 1.0),
            ("weight_decay", 0.0, math.inf),
            ("beta1", 0.0, 1.0),
            ("beta2", 0.0, 1.0),
            ("grad_clip", 0.0, math.inf),
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"TrainConfig.{name}={value!r}: must be a number in [{low}, {high}]")
        if self.lr <= 0 or self.warmup_fraction >= 1 or self.beta1 >= 1 or self.beta2 >= 1:
            raise ValueError(
                f"TrainConfig: need lr > 0 (got {self.lr}), warmup_fraction < 1 "
                f"(got {self.warmup_fraction}), beta1, beta2 < 1 (got {self.beta1}, {self.beta2})"
            )
        _non_negative_int("eval_every_tokens", self.eval_every_tokens)
        _positive_int("eval_tokens", self.eval_tokens)
        _non_negative_int("threads", self.threads)
        _non_negative_int("seed", self.seed)
        for name, allowed in (("schedule", SCHEDULES), ("device", DEVICES), ("dtype", DTYPES),
                              ("keep_weights", KEEP_WEIGHTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: allowed {allowed}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"TrainConfig.compile={self.compile!r}: must be true or false")
        _non_negative_int("warmup_tokens", self.warmup_tokens)
        _non_negative_int("log_every_tokens", self.log_every_tokens)
        if self.warmup_tokens > self.total_tokens:
            raise ValueError(
                f"TrainConfig.warmup_tokens={self.warmup_tokens}: must be at most "
                f"total_tokens={self.total_tokens}"
            )
        if self.decay_shape not in DECAY_SHAPES:
            raise ValueError(f"TrainConfig.decay_shape={self.decay_shape!r}: allowed {DECAY_SHAPES}")
        self._check_eval_at_tokens()

    def _check_eval_at_tokens(self) -> None:
        """A JSON round trip gives a list: stored as a sorted tuple of distinct whole steps."""
        raw = self.eval_at_tokens
        if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
            raise ValueError(f"TrainConfig.eval_at_tokens={raw!r}: must be a list of token counts")
        values = tuple(sorted(set(raw)))
        for tokens in values:
            if (
                isinstance(tokens, bool)
                or not isinstance(tokens, int)
                or tokens <= 0
                or tokens % self.batch_tokens
                or tokens > self.total_tokens
            ):
                raise ValueError(
                    f"TrainConfig.eval_at_tokens: {tokens!r} must be a positive multiple of "
                    f"batch_tokens={self.batch_tokens} up to total_tokens={self.total_tokens}"
                )
        object.__setattr__(self, "eval_at_tokens", values)

    @property
    def total_steps(self) -> int:
        return self.total_tokens // self.batch_tokens

    @property
    def log_every_steps(self) -> int:
        return log_every_steps(self.total_steps, self.batch_tokens, self.log_every_tokens)

    @property
    def micro_tokens(self) -> int:
        """Tokens per forward/backward pass (micro_batch_tokens, or batch_tokens when 0)."""
        return self.micro_batch_tokens or self.batch_tokens

    @property
    def eval_every_steps(self) -> int:
        return (
            eval_interval_tokens(self.total_tokens, self.batch_tokens, self.eval_every_tokens)
            // self.batch_tokens
        )

    @property
    def warmup_steps(self) -> int:
        """warmup_tokens // batch_tokens when set, else warmup_fraction of the steps (rounded down):
        1,000 steps at 5% -> 50; warmup_tokens 102,400 at 2,048 per step -> 50 whatever the length."""
        if self.warmup_tokens:
            return self.warmup_tokens // self.batch_tokens
        return int(self.warmup_fraction * self.total_steps)

    @property
    def eval_at_steps(self) -> frozenset[int]:
        return frozenset(t // self.batch_tokens for t in self.eval_at_tokens)


@dataclass(frozen=True)
class Measurement:
    """What the loop reports at each evaluation (losses in nats per token)."""

    step: int  # optimizer steps done
    tokens: int  # step * batch_tokens
    flops: float  # tokens * shape.flops_per_token() (exact, Chinchilla App. F)
    flops_6n: float  # tokens * 6N (Kaplan)
    train_loss: float  # mean of the step losses since the previous evaluation
    val_loss: float  # on the fixed held-out slice; NaN when diverged
    val_bpb: float  # val_loss / ln 2 / bytes_per_token; NaN without text (a .bin corpus)
    lr_now: float  # learning rate of the last step
    wall_seconds: float  # since the run began (all resumed segments), evaluations included
    tokens_per_second: float  # training throughput over the interval, evaluation excluded
    final: bool
    status: str  # "ok" | "diverged"


def eval_steps(config: TrainConfig, after: int) -> list[int]:
    """The steps the real loop evaluates at, after step `after`: every eval_every_steps, each
    of eval_at_tokens, and the last."""
    total, every = config.total_steps, config.eval_every_steps
    steps = set(range(every, total + 1, every)) | set(config.eval_at_steps) | {total}
    return sorted(s for s in steps if after < s <= total)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based).

    Linear warmup over config.warmup_steps, then
    - cosine: half a cosine from lr down to min_lr_ratio * lr, reached at the last step
      (Chinchilla: cycle length = run length, decay to 10x lower, Fig. A1);
    - wsd: flat at lr, then down to min_lr_ratio * lr over the last round(decay_fraction * steps)
      steps (warmup-stable-decay, Hu et al. 2024 MiniCPM; Hagele et al. 2024), linear or 1-sqrt;
    - constant: flat at lr.
    1000 steps, 5% warmup: step 0 -> lr/50, step 49 -> lr, step 999 -> 0.1 lr (cosine).
    """
    total = config.total_steps
    warmup = config.warmup_steps
    peak, floor = config.lr, config.lr * config.min_lr_ratio
    if step < warmup:
        return peak * (step + 1) / warmup
    if config.schedule == "constant":
        return peak
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total - 1 - warmup)
        return floor + 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * (peak - floor)
    decay_steps = max(1, round(config.decay_fraction * total))
    decay_start = total - decay_steps
    if step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start + 1) / decay_steps)
    if config.decay_shape == "1-sqrt":
        # Hagele et al. 2024 Eq. 1: floor + (peak - floor)(1 - sqrt(progress)); 100 decay
        # steps: the 25th is at 1 - 0.5 = half way, where linear would be at 75%.
        return floor + (peak - floor) * (1.0 - math.sqrt(progress))
    return peak + (floor - peak) * progress


def eval_interval_tokens(
    total_tokens: int, grain_tokens: int, every_tokens: int = 0, evals: int = EVALS_PER_RUN
) -> int:
    """Tokens between evaluations: a whole number of grains (an optimizer step's batch_tokens, or
    for a search the lcm of every batch_tokens it may pick), at least one, at most total_tokens.
    every_tokens rounds to the nearest grain (5,000 over 2,048-token steps -> 2 steps, 4,096);
    0 splits the run into `evals`, rounding down so it gets at least that many evaluations:
    948 steps / 8 -> every 118 steps."""
    if every_tokens:
        grains = max(1, round(every_tokens / grain_tokens))
    else:
        grains = max(1, total_tokens // (evals * grain_tokens))
    return min(total_tokens, grains * grain_tokens)


def rows_per_rank(batch_tokens: int, seq_len: int, world_size: int) -> int:
    """Rows of seq_len tokens that each of world_size data-parallel ranks takes per optimizer
    step: batch_tokens 8,192 at seq_len 128 on 4 ranks -> 64 rows / 4 = 16. An uneven split
    would change the global batch (or idle a rank), so it is refused."""
    if batch_tokens % (world_size * seq_len):
        raise ValueError(
            f"TrainConfig.batch_tokens={batch_tokens}: must be a multiple of world_size * "
            f"seq_len = {world_size} * {seq_len} = {world_size * seq_len}, so that each of "
            f"the {world_size} data-parallel ranks takes an equal share of every step"
        )
    return batch_tokens // (world_size * seq_len)


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"TrainConfig.{name}={value!r}: must be a positive integer")


def _non_negative_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"TrainConfig.{name}={value!r}: must be a non-negative integer")
