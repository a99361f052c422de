"""`design: {kind: adaptive, target_flops: C, study_budget_flops: B, tolerance: 1.25}`:
a study whose later trials follow the fit.

The candidates are the grid's trials (every budgets_flops x the sizes plan.select_sizes
brackets its prior N* with) plus one more size on each side of every bracket, where the dial
has one and it spends the budget in whole steps, so a minimum at an edge can be re-centred.
Round 1 is a seed: the 3 smallest budgets x the 3 middle sizes of their brackets (9 trials;
a grid of 4 budgets x 5 sizes costs about 4x that). As trials land, the queue
(orchestrator/adaptive_queue.py) refits with the run bootstrap and proposes what narrows
N*(target_flops)'s 95% interval most per FLOP (analysis/adaptive.py), while other trials still
run, until hi / lo <= tolerance^2 or no candidate fits in what is left of study_budget_flops;
_adaptive.json in the results folder says which, with every round's answer.

`scaling plan` shows round 1 only: later rounds depend on results. Plan.total_flops is round
1's FLOPs; the study spends at most study_budget_flops.

With `trials: [{budget_flops, n_layer, d_model, seed, round, reason}, ...]` (what `scaling next`
writes, orchestrator/next_trials.py) the plan is exactly those trials and nothing follows them:
a study run round by round, each round's choice made by `scaling next` on the results so far.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

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
from scaling_orchestrator.orchestrator.spec.validate import (
    SpecError,
    choice,
    fail,
    mapping,
    number,
    sequence,
    whole_number,
)

KEYS = ("target_flops", "study_budget_flops", "tolerance", "batch", "law", "bootstrap", "trials")
TRIAL_KEYS = ("budget_flops", "n_layer", "d_model", "seed", "round", "reason")
SEED_BUDGETS = 3
SEED_SIZES = 3
SEED_REASON = f"round 1: seed ({SEED_BUDGETS} smallest budgets x {SEED_SIZES} middle sizes)"


@dataclass(frozen=True)
class AdaptiveOptions:
    target_flops: float
    study_budget_flops: float
    tolerance: float = 1.25  # stop when N*'s 95% interval is within x/÷ 1.25 (hi / lo <= 1.5625)
    batch: int = 0  # trials proposed at a time; 0: the free slots (max_concurrent_trials or 4)
    law: str = "chinchilla"
    bootstrap: int = 200  # run-bootstrap resamples per refit (about 3 s on 2 cores)
    trials: tuple[dict, ...] = ()  # exactly these, no later rounds (`scaling next`)


def parse_design(raw: dict, sweep_raw: dict) -> AdaptiveOptions:
    mapping(raw, "design", KEYS)
    for key in ("target_flops", "study_budget_flops"):
        if key not in raw:
            raise SpecError(f"design.{key}: missing; the adaptive design needs target_flops and "
                            "study_budget_flops")
    budgets = [number(b, "budgets_flops") for b in sweep_raw.get("budgets_flops") or []]
    largest = max(budgets, default=0.0)
    target = number(raw["target_flops"], "design.target_flops",
                    f"a FLOP count above the largest budgets_flops ({largest:g})",
                    lambda x: x > largest)
    if sweep_raw.get("held_out_budgets_flops"):
        raise SpecError("held_out_budgets_flops: not used by the adaptive design (its answer is "
                        "checked by N*'s interval at design.target_flops); remove them or use "
                        "design: grid")
    return AdaptiveOptions(
        target_flops=target,
        study_budget_flops=number(raw["study_budget_flops"], "design.study_budget_flops",
                                  "a positive FLOP count", lambda x: x > 0),
        tolerance=number(raw.get("tolerance", 1.25), "design.tolerance",
                         "a factor > 1 (1.25: within x/÷1.25)", lambda x: x > 1),
        batch=whole_number(raw.get("batch", 0), "design.batch"),
        law=choice(raw.get("law", "chinchilla"), "design.law", laws()),
        bootstrap=whole_number(raw.get("bootstrap", 200), "design.bootstrap", minimum=20),
        trials=tuple(parse_trial(item, f"design.trials[{i}]")
                     for i, item in enumerate(sequence(raw.get("trials", []), "design.trials",
                                                       "trials {budget_flops, n_layer, d_model}"))))


def parse_trial(raw, path: str) -> dict:
    """One listed trial: budget_flops, n_layer, d_model (a shape of the model section), seed,
    round and reason (what `scaling next` said about it)."""
    mapping(raw, path, TRIAL_KEYS)
    for key in ("budget_flops", "n_layer", "d_model"):
        if key not in raw:
            raise SpecError(f"{path}.{key}: missing; a listed trial needs budget_flops, n_layer "
                            "and d_model")
    reason = raw.get("reason", "")
    if not isinstance(reason, str):
        fail(f"{path}.reason", reason, "a string")
    return {"budget_flops": number(raw["budget_flops"], f"{path}.budget_flops", "a positive number",
                                   lambda x: x > 0),
            "n_layer": whole_number(raw["n_layer"], f"{path}.n_layer", minimum=1),
            "d_model": whole_number(raw["d_model"], f"{path}.d_model", minimum=1),
            "seed": whole_number(raw.get("seed", 0), f"{path}.seed"),
            "round": whole_number(raw.get("round", 1), f"{path}.round", minimum=1),
            "reason": reason}


def laws() -> tuple[str, ...]:
    """The law forms a trial's (N, D) determine (data_constrained also needs unique tokens)."""
    from scaling_orchestrator.analysis.laws.registry import forms

    return tuple(name for name, form in forms().items() if not form.required_columns)


def feasible(sweep, budget: float, shape) -> bool:
    """Whether `shape` spends `budget` in whole steps (plan.infeasible's rule)."""
    return not infeasible(budget, shape, sweep)


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
    from scaling_orchestrator.orchestrator.designs.adaptive_queue import AdaptiveQueue

    return AdaptiveQueue(plan, todo, store, candidates(plan.sweep))


def adaptive_searcher(spec_path_or_sweep, results_dir: str):
    """A Ray Tune Searcher running the adaptive study of a spec (a path or a Sweep) into
    results_dir, for a user's own tune.Tuner:

        searcher = adaptive_searcher("examples/adaptive.yaml", "results/adaptive")
        tune.Tuner(with_trial_resources(spec), tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=-1)).fit()

    (spec: any of make_plan(sweep).trials; every trial reserves the same resources)."""
    from scaling_orchestrator.orchestrator.execution.searcher import StudySearcher
    from scaling_orchestrator.orchestrator.spec.sweep import Sweep, load_sweep
    from scaling_orchestrator.orchestrator.store.results import Store

    sweep = spec_path_or_sweep if isinstance(spec_path_or_sweep, Sweep) else load_sweep(spec_path_or_sweep)
    if sweep.design.kind != "adaptive":
        raise SpecError(f"{sweep.source}: design: {sweep.design.kind}; adaptive_searcher needs "
                        "design: {kind: adaptive, ...}")
    plan = make_plan(sweep)
    store = Store(os.path.abspath(results_dir) if "://" not in results_dir else results_dir)
    store.write_plan(plan.trials)
    todo = [t for t in plan.trials if t.trial_id not in store.done_trial_ids()]
    return StudySearcher(make_queue(plan, todo, store), store, {"results_dir": store.uri})
