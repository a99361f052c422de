"""The spec's `train:` section: the recipe every trial shares (TrainConfig's fields, checked one
by one), the planner's minimum steps, and `train.lr` read from a fit or a search."""

from __future__ import annotations

from dataclasses import dataclass

from scaling_orchestrator.analysis.methods.hparam_laws import LrLaw
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import (
    DEVICES,
    DTYPES,
    EVALS_PER_RUN,
    KEEP_WEIGHTS,
    SCHEDULES,
    TrainConfig,
    eval_interval_tokens,
)
from scaling_orchestrator.orchestrator.spec.sections.hparams import LrSource, split_lr_law
from scaling_orchestrator.orchestrator.spec.sections.model import ModelSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError, choice, dataclass_fields, fail

MIN_STEPS = 25  # train.min_steps' default: whole-step rounding stays within 2% of a budget: 0.5/25


@dataclass(frozen=True)
class Recipe:
    """The training recipe shared by all trials; the planner sets total_tokens, seed, eval cadence."""

    config: TrainConfig  # total_tokens = one step here, a placeholder
    evals_per_trial: int = EVALS_PER_RUN  # used when config.eval_every_tokens is 0
    min_steps: int = MIN_STEPS
    lr_law: LrLaw | None = None  # from train.lr: {from_fit} or {from_search}, once read: lr = law(N)
    lr_params: str = "total"  # the law's N: total or non_embedding params
    lr_source: LrSource | None = None  # train.lr: {from_fit} / {from_search} as written

    def steps(self, budget_flops: float, shape: ModelShape) -> int:
        """Whole optimizer steps nearest a budget: round(C / (flops_per_token * batch_tokens));
        1.25e12 FLOPs at 2L x 32d x 2h (vocab 1024, seq 128) in 2048-token steps -> 948."""
        return round(budget_flops / (shape.flops_per_token() * self.config.batch_tokens))

    def too_few_steps(self, steps: int, batch_tokens: int = 0) -> str:
        """Why `steps` optimizer steps of batch_tokens (0: the recipe's) are too few, or "" when
        they reach train.min_steps: the one minimum-steps rule of the spec, planner and search."""
        if steps >= self.min_steps:
            return ""
        tokens = batch_tokens or self.config.batch_tokens
        return f"{steps} steps of {tokens} tokens < train.min_steps {self.min_steps}"

    def eval_every_tokens(self, total_tokens: int, grain_tokens: int) -> int:
        """The evaluation interval of a trial of total_tokens, in whole grains
        (scaling_orchestrator.models.training.config)."""
        return eval_interval_tokens(
            total_tokens, grain_tokens, self.config.eval_every_tokens, self.evals_per_trial
        )



def parse_recipe(raw, model: ModelSpec) -> Recipe:
    source, raw = split_lr_law(raw, model)  # train.lr: {from_fit: PATH} or {from_search: PATH} (mup)
    seq_len = model.seq_len
    kw = dataclass_fields(
        raw,
        "train",
        TrainConfig,
        skip=("total_tokens", "seed"),
        extra={"evals_per_trial": EVALS_PER_RUN, "min_steps": MIN_STEPS},
    )
    if "batch_tokens" not in kw:
        raise SpecError(f"train.batch_tokens: missing; a positive multiple of model.seq_len ({seq_len})")
    if "eval_every_tokens" in kw and "evals_per_trial" in kw:
        fail("train.eval_every_tokens", kw["eval_every_tokens"], "absent when evals_per_trial is given")
    batch, micro = kw["batch_tokens"], kw.get("micro_batch_tokens", 0)
    if batch <= 0 or batch % seq_len:
        fail("train.batch_tokens", batch, f"a positive multiple of model.seq_len ({seq_len})")
    if micro and (micro % seq_len or batch % micro):
        fail(
            "train.micro_batch_tokens",
            micro,
            f"0 or a multiple of model.seq_len ({seq_len}) dividing batch_tokens ({batch})",
        )
    get = lambda name: kw.get(name, getattr(TrainConfig, name, 1))  # noqa: E731 (default: TrainConfig's)
    for name, choices in (
        ("schedule", SCHEDULES), ("dtype", DTYPES), ("device", DEVICES), ("keep_weights", KEEP_WEIGHTS)
    ):
        choice(get(name), f"train.{name}", choices)
    # (field, ok, allowed); negative numbers were refused by dataclass_fields
    for name, ok, allowed in (
        ("lr", lambda x: x > 0, "> 0"),
        ("warmup_fraction", lambda x: x < 1, "in [0, 1)"),
        ("min_lr_ratio", lambda x: x <= 1, "in [0, 1]"),
        ("decay_fraction", lambda x: 0 < x <= 1, "in (0, 1]"),
        ("beta1", lambda x: x < 1, "in [0, 1)"),
        ("beta2", lambda x: x < 1, "in [0, 1)"),
        ("eval_tokens", lambda x: x >= seq_len, f">= model.seq_len ({seq_len}): whole sequences"),
        ("evals_per_trial", lambda x: x >= 1, ">= 1"),
        ("min_steps", lambda x: x >= 1, ">= 1"),
    ):
        if not ok(get(name)):
            fail(f"train.{name}", get(name), allowed)
    extra = {k: kw.pop(k) for k in ("evals_per_trial", "min_steps") if k in kw}
    if source is not None:
        extra.update(lr_source=source, lr_params=source.params)
    return Recipe(TrainConfig(total_tokens=batch, **kw), **extra)
