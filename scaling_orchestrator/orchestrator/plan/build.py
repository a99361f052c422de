"""A `Plan` (the trials of a study, what was dropped and why, notes, cost) and the arithmetic
every design builds one with. Pure and deterministic; no Ray.

- select_sizes: k candidate shapes bracketing N*(C) = k C^a (the prior) in log params;
- make_trial: a size at a budget in whole optimizer steps, round(C / (flops_per_token x
  batch_tokens)), with the exact Chinchilla App. F count, so its FLOPs are within 2% of C
  (rounding costs at most 0.5/steps: 25 steps -> 2%), placed on the cluster (placement.py);
- infeasible: the one rule for a size that cannot spend a budget (Recipe.too_few_steps, or off
  by more than FLOPS_TOLERANCE), shared by every design and by `scaling next`;
- trial_lr: train.lr, or lr*(N) of a law the spec read (spec/references.py);
- make_hparam_trial: the base trial of one search size (kind "hparam", group "").

Time estimate: a trial takes flops / flops_per_second + overhead_seconds_per_trial; trials run
max_concurrent_trials at a time (1 when the spec leaves it to the runner: an upper bound),
longest first onto the earliest free slot (Graham's LPT list schedule, within 4/3 of optimal).
The designs (designs/: grid, branches, adaptive, shape) decide which trials a plan holds.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass

from scaling_orchestrator.analysis.data.schema import HELD_OUT
from scaling_orchestrator.analysis.numerics import json_text
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.fmt import si
from scaling_orchestrator.orchestrator.plan import text as plan_text
from scaling_orchestrator.orchestrator.plan.data import epochs
from scaling_orchestrator.orchestrator.plan.placement import (
    cluster_cost,
    declared_gpus,
    place_trial,
    scaled_trial_seconds,
    trial_memory,
)
from scaling_orchestrator.orchestrator.spec.sections.hparams import HparamSize
from scaling_orchestrator.orchestrator.spec.sweep import Recipe, Sweep
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec

__all__ = ["FLOPS_TOLERANCE", "HELD_OUT", "MIN_SIZES", "Dropped", "Plan", "budgets", "infeasible",
           "lr_law_notes", "make_hparam_trial", "make_trial", "makespan", "param_count", "select_sizes",
           "trial_lr"]

FLOPS_TOLERANCE = 0.02  # a trial's FLOPs within 2% of its budget
MIN_SIZES = 3  # a budget's IsoFLOP profile: three sizes make a parabola


@dataclass(frozen=True)
class Dropped:
    budget_flops: float
    shape: ModelShape
    reason: str


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    trials: tuple[TrialSpec, ...]
    dropped: tuple[Dropped, ...] = ()
    notes: tuple[str, ...] = ()
    hparam_trials: tuple[TrialSpec, ...] = ()  # one base trial per search size, in size order
    extra: dict = dataclasses.field(default_factory=dict)  # a design's own keys in `scaling plan --json`
    spend_flops: float | None = None  # what the study spends, when not the sum of its trials (branches)

    @property
    def total_flops(self) -> float:
        """What the study spends: the trials' FLOPs, or the design's own count (a branch's
        flops count its trunk's share, which its trunk already spent)."""
        return self.spend_flops if self.spend_flops is not None else sum(t.flops for t in self.trials)

    @property
    def concurrency(self) -> int:
        return self.sweep.max_concurrent_trials or 1

    @property
    def estimated_wall_seconds(self) -> float:
        return makespan([self.trial_seconds(t) for t in self.trials], self.concurrency)

    def trial_seconds(self, trial: TrialSpec) -> float:
        """Estimated: flops / flops_per_second + overhead; 1e12 FLOPs at 4.5e10 FLOP/s + 2 s -> 24 s.
        flops_per_second is the spec's per trial of its base resources, scaled by the GPUs a
        size's own resources hold (placement.scaled_trial_seconds)."""
        s = self.sweep
        seconds = scaled_trial_seconds(s.flops_per_second, s.overhead_seconds_per_trial, s.resources, trial)
        # a branch trains only its cooldown: its trunk already spent branch_tokens' FLOPs
        trunk_share = trial.flops - trial.own_flops
        return seconds - trunk_share / trial.flops * (seconds - s.overhead_seconds_per_trial)

    @property
    def cluster(self) -> dict:
        """GPU-hours and makespan on the GPUs the spec declares (placement.cluster_cost)."""
        return cluster_cost(self.trials, self.trial_seconds, declared_gpus(self.sweep))

    def to_dict(self) -> dict:
        s = self.sweep
        return {
            "sweep": s.name, "source": s.source, "storage": s.storage,
            "budgets_flops": list(s.budgets_flops), "held_out_budgets_flops": list(s.held_out_budgets_flops),
            "prior": {"rule": s.prior.source, "coefficient": s.prior.coefficient,
                      "exponent": s.prior.exponent, "span": s.prior.span, "params": s.prior.params,
                      "optimal_params": {f"{c:g}": s.prior.optimal_params(c) for c in budgets(s)}},
            "trials": [self.trial_row(t) for t in self.trials],
            "dropped": [{"budget_flops": d.budget_flops, "n_layer": d.shape.n_layer,
                         "d_model": d.shape.d_model, "reason": d.reason} for d in self.dropped],
            "notes": list(self.notes), "n_trials": len(self.trials), "total_flops": self.total_flops,
            "weights_bytes": plan_text.kept_weight_bytes(self.trials),
            "flops_per_second": s.flops_per_second, "concurrency": self.concurrency,
            "estimated_wall_seconds": self.estimated_wall_seconds,
            "hparams": self.hparams_dict() if s.hparams else None,
            "design": s.design.kind, "cluster": self.cluster, **self.extra,
        }

    def to_json(self) -> str:
        return json_text(self.to_dict(), indent=2)

    def render(self) -> str:
        return plan_text.render(self)

    def trial_row(self, t: TrialSpec) -> dict:
        """One trial of `scaling plan --json`."""
        counts = t.shape.param_counts()
        return {
            "trial_id": t.trial_id, "budget_flops": t.budget_flops, "held_out": t.group == HELD_OUT,
            "group": t.group, "size_label": t.size_label,
            "seed": t.train.seed, "n_layer": t.shape.n_layer, "d_model": t.shape.d_model,
            "n_head": t.shape.n_head, "d_ff": t.shape.d_ff, "params": counts["total"],
            "non_embedding_params": counts["non_embedding"], "tokens": t.train.total_tokens,
            "steps": t.train.total_steps, "tokens_per_param": t.train.total_tokens / counts["total"],
            "flops": t.flops, "flops_over_budget": t.flops / t.budget_flops,
            "eval_every_tokens": t.train.eval_every_tokens, "lr": t.train.lr,
            "estimated_seconds": self.trial_seconds(t), **trial_memory(t),
            "unique_tokens": t.unique_tokens, "epochs": epochs(t), "spec": t.to_dict(),
        }

    def hparams_dict(self) -> dict:
        """The search section of `scaling plan --json`: one base trial per size, FLOPs at most."""
        h = self.sweep.hparams
        sizes = [
            {
                "label": t.size_label,
                "trial_id": t.trial_id,
                "n_layer": t.shape.n_layer,
                "d_model": t.shape.d_model,
                "n_head": t.shape.n_head,
                "params": t.shape.param_counts()["total"],
                "tokens": t.train.total_tokens,
                "eval_every_tokens": t.train.eval_every_tokens,
                "lr": t.train.lr,
                "trials": h.trials_per_size,
                "flops_per_trial": t.flops,
                "flops_upper_bound": h.trials_per_size * t.flops,
                "estimated_seconds_upper_bound": h.trials_per_size * self.trial_seconds(t),
                "spec": t.to_dict(),
            }
            for t in self.hparam_trials
        ]
        return {
            "search": h.search,
            "num_samples": h.num_samples,
            "trials_per_size": h.trials_per_size,
            "scheduler": h.scheduler,
            "grace_period_tokens": h.grace_period_tokens,
            "reduction_factor": h.reduction_factor,
            "seed": h.seed,
            "tokens": h.token_rule,
            "space": [{"name": d.name, "primitive": d.primitive, "values": list(d.values)} for d in h.space],
            "sizes": sizes,
            "n_trials": h.trials_per_size * len(sizes),
            "flops_upper_bound": sum(x["flops_upper_bound"] for x in sizes),
        }


def select_sizes(shapes, n_star: float, k: int, span: float, params: str = "total") -> list[ModelShape]:
    """k shapes bracketing n_star (shapes sorted by params).

    A fine dial (2k-1 or more candidates inside n_star/span..n_star*span): the nearest distinct
    shape to each of k targets log-spaced over that range, the middle target first. A coarse
    dial (fewer: nearest-to-target picks would skip sizes and leave holes in the bracket): the
    k consecutive candidates whose mean log params is nearest log n_star (the depth dial at
    aspect 16 steps ~2x in params).
    """
    logs = [math.log(param_count(s, params)) for s in shapes]
    centre, half = math.log(n_star), math.log(span)
    inside = [i for i, x in enumerate(logs) if abs(x - centre) <= half]
    if len(inside) < 2 * k - 1:
        starts = range(max(len(shapes) - k, 0) + 1)
        first = min(starts, key=lambda s: (abs(sum(logs[s : s + k]) / len(logs[s : s + k]) - centre), s))
        return list(shapes[first : first + k])
    offsets = [half * (2 * i / (k - 1) - 1) for i in range(k)] if k > 1 else [0.0]
    chosen: list[int] = []
    for offset in sorted(offsets, key=abs):  # the middle target first: it claims the nearest size
        free = [i for i in range(len(shapes)) if i not in chosen]
        chosen.append(min(free, key=lambda i: (abs(logs[i] - centre - offset), i)))
    return [shapes[i] for i in sorted(chosen, key=lambda i: logs[i])]


def make_trial(sweep: Sweep, budget: float, shape: ModelShape, seed: int, group: str = "") -> TrialSpec:
    recipe = sweep.train
    batch = recipe.config.batch_tokens
    total = recipe.steps(budget, shape) * batch
    config = dataclasses.replace(
        recipe.config,
        total_tokens=total,
        seed=seed,
        eval_every_tokens=recipe.eval_every_tokens(total, batch),
        lr=trial_lr(recipe, shape),
    )
    trial = TrialSpec(
        sweep=sweep.name,
        kind="scaling",
        shape=shape,
        data=sweep.data,
        train=config,
        budget_flops=float(budget),
        resources=sweep.resources,
        group=group,
        size_label=sweep.model.label(shape),
        simulate=sweep.simulate,
        trainer=sweep.backend,
    )
    return place_trial(trial, sweep.resource_rules)


def make_hparam_trial(sweep: Sweep, size: HparamSize) -> TrialSpec:
    """The base trial of one search size; its budget_flops is the
    FLOPs one full-length trial spends, the same for every config the search tries."""
    config = dataclasses.replace(
        sweep.train.config,
        total_tokens=size.total_tokens,
        seed=sweep.seeds[0],
        eval_every_tokens=size.eval_every_tokens,
        lr=trial_lr(sweep.train, size.shape),
    )
    trial = TrialSpec(
        sweep=sweep.name,
        kind="hparam",
        shape=size.shape,
        data=sweep.data,
        train=config,
        budget_flops=size.total_tokens * size.shape.flops_per_token(),
        resources=sweep.resources,
        size_label=size.label,  # group "": not a held-out run
        simulate=sweep.simulate,
        trainer=sweep.backend,
    )
    return place_trial(trial, sweep.resource_rules, fit_memory=False)


def trial_lr(recipe: Recipe, shape: ModelShape) -> float:
    """train.lr, or lr*(N) = c N^p of the fitted law (train.lr: {from_fit}) at this size."""
    if recipe.lr_law is None:
        if recipe.lr_source is not None:
            raise ValueError(f"train.lr.{recipe.lr_source.kind} {recipe.lr_source.path!r} is not read "
                             "yet: resolve(sweep) (spec/references.py; make_plan runs it) reads it")
        return recipe.config.lr
    return float(recipe.lr_law(param_count(shape, recipe.lr_params)))


def lr_law_notes(sweep: Sweep, trials) -> list[str]:
    law = sweep.train.lr_law
    if law is None:
        return []
    lo, hi = law.n_range
    notes = []
    for shape in sorted({t.shape for t in trials}, key=lambda s: param_count(s, sweep.train.lr_params)):
        n = param_count(shape, sweep.train.lr_params)
        if not lo <= n <= hi:
            notes.append(
                f"lr: {sweep.model.label(shape)} has {si(n)} {sweep.train.lr_params} params, "
                f"outside the {si(lo)}..{si(hi)} the lr law of {law.source} was fitted on: "
                f"lr {trial_lr(sweep.train, shape):.3g} is an extrapolation"
            )
    return notes


def makespan(seconds, slots: int) -> float:
    """LPT list schedule: longest job first onto the slot that frees up first."""
    free_at = [0.0] * max(1, slots)
    for job in sorted(seconds, reverse=True):
        heapq.heappush(free_at, heapq.heappop(free_at) + job)
    return max(free_at)


def budgets(sweep: Sweep) -> tuple[float, ...]:
    return sweep.budgets_flops + sweep.held_out_budgets_flops


def param_count(shape: ModelShape, convention: str) -> int:
    return shape.param_counts()[convention]


def infeasible(budget: float, shape: ModelShape, recipe: Recipe, label: str = "") -> str:
    """Why this size (named `label` in the reason) cannot spend this budget in whole steps of
    the recipe (train.min_steps, FLOPs within FLOPS_TOLERANCE of the budget), or "". Every
    design places trials by this rule, and `scaling next` proposes by it."""
    steps = recipe.steps(budget, shape)
    short = recipe.too_few_steps(steps)
    if short:
        return f"{label}: {short}"
    ratio = steps * recipe.config.batch_tokens * shape.flops_per_token() / budget
    if abs(ratio - 1) > FLOPS_TOLERANCE:
        return f"{label}: whole steps give {ratio:.3f}x the budget, off by more than {FLOPS_TOLERANCE:.0%}"
    return ""
