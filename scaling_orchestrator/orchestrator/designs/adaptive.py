"""`design: {kind: adaptive, target_flops: C, study_budget_flops: B, tolerance: 1.25}`:
a study whose later trials follow the fit.

The candidates are the grid's trials (every budgets_flops x the sizes plan.select_sizes
brackets its prior N* with) plus one more size on each side of every bracket, where the dial
has one and it spends the budget in whole steps, so a minimum at an edge can be re-centred.
Round 1 is a seed: the 3 smallest budgets x the 3 middle sizes of their brackets (9 trials;
a grid of 4 budgets x 5 sizes costs about 4x that). As trials land, the queue
(designs/adaptive_queue.py) refits with the run bootstrap and proposes what narrows
N*(target_flops)'s 95% interval most per FLOP (analysis.design.select), while other trials still
run, until hi / lo <= tolerance^2 or no candidate fits in what is left of study_budget_flops;
_adaptive.json in the results folder says which, with every round's answer.

`scaling plan` shows round 1 only: later rounds depend on results. Plan.total_flops is round
1's FLOPs; the study spends at most study_budget_flops. The options are spec/sections/design.py's
AdaptiveOptions; execution/searcher.py's adaptive_searcher runs the study in a user's own Tuner.

With `trials: [{budget_flops, n_layer, d_model, seed, round, reason}, ...]` (what `scaling next`
writes, designs/next_trials.py) the plan is exactly those trials and nothing follows them:
a study run round by round, each round's choice made by `scaling next` on the results so far.
"""

from __future__ import annotations

import dataclasses
import math

from scaling_orchestrator.orchestrator.designs.adaptive_queue import AdaptiveQueue
from scaling_orchestrator.orchestrator.designs.queue import TrialQueue
from scaling_orchestrator.orchestrator.plan.build import (
    FLOPS_TOLERANCE,
    MIN_SIZES,
    Plan,
    infeasible,
    make_hparam_trial,
    make_trial,
    select_sizes,
)
from scaling_orchestrator.orchestrator.spec.sections.design import AdaptiveOptions
from scaling_orchestrator.orchestrator.spec.validate import SpecError

SEED_BUDGETS = 3
SEED_SIZES = 3
SEED_REASON = f"round 1: seed ({SEED_BUDGETS} smallest budgets x {SEED_SIZES} middle sizes)"


def feasible(sweep, budget: float, shape) -> bool:
    """Whether `shape` spends `budget` in whole steps (plan.infeasible's rule)."""
    return not infeasible(budget, shape, sweep.train)


def bracket(sweep, budget: float) -> list:
    """The grid's sizes at `budget` plus one more on each side at the bracket's own spacing in
    log params (5 sizes over N*/4..4N*: a factor 2 apart, so N*/8 and 8N*), the dial's nearest
    shape to each, where it spends the budget in whole steps."""
    def count(shape) -> int:
        return shape.param_counts()[sweep.prior.params]

    shapes = list(sweep.model.shapes)
    chosen = select_sizes(shapes, sweep.prior.optimal_params(budget), sweep.sizes_per_budget,
                          sweep.prior.span, sweep.prior.params)
    lo, hi = count(chosen[0]), count(chosen[-1])
    step = (hi / lo) ** (1.0 / max(len(chosen) - 1, 1))
    outer = []
    for target, side in ((lo / step, [s for s in shapes if count(s) < lo]),
                         (hi * step, [s for s in shapes if count(s) > hi])):
        if side:
            best = min(side, key=lambda s: abs(math.log(count(s) / target)))
            if feasible(sweep, budget, best):
                outer.append(best)
    return sorted(chosen + outer, key=count)


def candidates(sweep) -> list:
    """Every trial the study may run, in budget then size order, round 0 and no reason yet."""
    out = []
    for budget in sweep.budgets_flops:
        for shape in bracket(sweep, budget):
            if feasible(sweep, budget, shape):
                out += [make_trial(sweep, budget, shape, seed) for seed in sweep.seeds]
    return out


def seed_round(sweep, pool) -> list:
    """Round 1: the SEED_SIZES middle sizes of the grid's bracket at each of the SEED_BUDGETS
    smallest budgets, every seed."""
    trials = []
    for budget in sweep.budgets_flops[:SEED_BUDGETS]:
        at = [t for t in pool if t.budget_flops == budget]
        sizes = sorted({t.shape for t in at}, key=lambda s: s.param_counts()["total"])
        grid = set(select_sizes(list(sweep.model.shapes), sweep.prior.optimal_params(budget),
                                sweep.sizes_per_budget, sweep.prior.span, sweep.prior.params))
        inner = [s for s in sizes if s in grid]
        first = max((len(inner) - SEED_SIZES) // 2, 0)
        middle = set(inner[first:first + SEED_SIZES])
        trials += [dataclasses.replace(t, round=1, reason=SEED_REASON) for t in at
                   if t.shape in middle]
    return trials


def listed_trials(sweep, options: AdaptiveOptions) -> list:
    """design.trials as TrialSpecs; each must name a shape of the model section and spend its
    budget in whole steps."""
    out = []
    for i, item in enumerate(options.trials):
        path = f"design.trials[{i}]"
        shape = next((s for s in sweep.model.shapes if (s.n_layer, s.d_model) ==
                      (item["n_layer"], item["d_model"])), None)
        if shape is None:
            raise SpecError(f"{path}: no shape of {item['n_layer']} layers x {item['d_model']} "
                            "in the model section")
        if not feasible(sweep, item["budget_flops"], shape):
            raise SpecError(f"{path}: {sweep.model.label(shape)} cannot spend "
                            f"{item['budget_flops']:g} FLOPs in whole steps (train.min_steps, 2%)")
        out.append(dataclasses.replace(make_trial(sweep, item["budget_flops"], shape, item["seed"]),
                                       round=item["round"], reason=item["reason"]))
    spent = sum(t.flops for t in out)
    if spent > options.study_budget_flops * (1 + FLOPS_TOLERANCE):
        raise SpecError(f"design.study_budget_flops: {options.study_budget_flops:g} must cover the "
                        f"listed trials' {spent:.3g} FLOPs")
    return out


def make_plan(sweep) -> Plan:
    options: AdaptiveOptions = sweep.design.options
    if options.trials:
        trials = listed_trials(sweep, options)
        note = (f"adaptive: {len(trials)} listed trials ({sum(t.flops for t in trials):.3g} FLOPs), "
                "chosen by `scaling next`; no later rounds follow them",)
        return Plan(sweep, tuple(trials), (), note, (), extra={"adaptive": {
            "target_flops": options.target_flops, "study_budget_flops": options.study_budget_flops,
            "tolerance": options.tolerance, "listed_trials": len(trials)}})
    if len(sweep.budgets_flops) < SEED_BUDGETS:
        raise SpecError(f"budgets_flops: {len(sweep.budgets_flops)} given; the adaptive design "
                        f"seeds at its {SEED_BUDGETS} smallest and needs more to choose from")
    pool = candidates(sweep)
    seed = seed_round(sweep, pool)
    if len({t.shape for t in seed if t.budget_flops == sweep.budgets_flops[0]}) < MIN_SIZES:
        raise SpecError(f"budgets_flops {sweep.budgets_flops[0]:g}: fewer than {MIN_SIZES} "
                        "sizes spend it in whole steps; raise it or widen model")
    seed_flops = sum(t.flops for t in seed)
    if options.study_budget_flops < seed_flops:
        raise SpecError(f"design.study_budget_flops: {options.study_budget_flops:g} must be at "
                        f"least round 1's {seed_flops:.3g} FLOPs ({len(seed)} trials)")
    hparam = tuple(make_hparam_trial(sweep, s) for s in (sweep.hparams.sizes if sweep.hparams else ()))
    notes = (f"adaptive: round 1 is {len(seed)} trials ({seed_flops:.3g} FLOPs); later rounds "
             f"choose from {len(pool)} candidates ({sum(t.flops for t in pool):.3g} FLOPs as a "
             f"grid) as results land, until N*({options.target_flops:.3g}) is within "
             f"x/÷{options.tolerance:g} or {options.study_budget_flops:.3g} FLOPs are spent",)
    extra = {"adaptive": {"target_flops": options.target_flops,
                          "study_budget_flops": options.study_budget_flops,
                          "tolerance": options.tolerance, "seed_flops": seed_flops,
                          "n_candidates": len(pool),
                          "candidate_flops": sum(t.flops for t in pool)}}
    return Plan(sweep, tuple(seed), (), notes, hparam, extra=extra)


def make_queue(plan, todo, store):
    """Listed trials run as a grid's (all at once); otherwise the adaptive queue."""
    if plan.sweep.design.options.trials:
        return TrialQueue(todo)
    return AdaptiveQueue(plan, todo, store, candidates(plan.sweep))
