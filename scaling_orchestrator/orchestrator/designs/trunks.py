"""`design: {kind: trunks, ...}`: one constant-LR trunk per size and one or two cooldowns, read
whole by the curve method (analysis/methods/curve.py).

A schedule-aware curve law (Luo et al. 2025, arXiv 2503.12811: seven constants per size, fitted
on a few schedules, sub-1% errors on unseen schedules and 3x longer runs; Tissue et al. 2024)
tells the final loss of every (N, D, schedule) from a few curves, and the joint law's floor
E + A_N N^-alpha_N interpolates between sizes, so a budget needs one size, not a bracket of
five. The sizes: per study budget C the shape nearest the prior's N*(C), `below` more at
N*(C_min) / span^k under them, and `above` more over them at N*(C_max r^k) (r the budgets'
ratio), each a short trunk spending `above_share` x C_max. Per size, spec seed and repeat, its
trunk runs at constant LR to the branch point of the largest budget it was chosen for, with
`evals` evaluations (dense, for the curve law), and `cooldowns` branches decay from it: to that
budget's token count and, with 2, to half of it (pinning the annealing term at a second length).
A budget then costs about 1.1 C (trunk and cooldowns) where the grid spends 5 C
(sizes_per_budget runs). The trunks and branches are the branches design's
(designs/branches.py: shared warmup, 1-sqrt cooldowns, the queue that starts a branch once its
trunk's checkpoint is kept).

Why sizes above and repeats: a run's noise moves its whole curve (and its cooldowns', which
share its weights), so each trunk is one noisy reading of its size's floor, and N*(C) rests on
the floor's slope near N*(C_target). Measured on a simulated multi-power law (bench/trunks.py,
N*(1e21) within x1.25 with the truth inside): one trunk a size, 6-7 of 20 seeds; sizes above
the largest budget's N* (a short run of a big model costs little, and the joint law's shared
data term carries it) and `repeats` 6 (one for the largest budget's size, `largest_repeats`),
18 of 20 at 0.28x the grid's FLOPs (budgets up to 1e20), 0.085x (up to 3e19).

The study spends the trunks and the cooldowns; the plan's notes and `scaling plan --json`
(`grid_flops`) set that beside the grid's FLOPs for the same budgets.
"""

from __future__ import annotations

import dataclasses

from scaling_orchestrator.analysis.data.schema import BRANCH
from scaling_orchestrator.orchestrator.designs import branches, grid
from scaling_orchestrator.orchestrator.plan.build import (
    Dropped,
    Plan,
    infeasible,
    make_hparam_trial,
    select_sizes,
)
from scaling_orchestrator.orchestrator.spec.sections.design import BranchesOptions, TrunksOptions

make_queue = branches.make_queue


def make_plan(sweep) -> Plan:
    options: TrunksOptions = sweep.design.options or TrunksOptions()
    like = BranchesOptions(cooldown_fraction=options.cooldown_fraction, decay_shape=options.decay_shape)
    dense = dataclasses.replace(sweep, train=dataclasses.replace(
        sweep.train, evals_per_trial=options.evals,
        config=dataclasses.replace(sweep.train.config, eval_every_tokens=0)))
    points, dropped = points_per_size(dense)
    trunks, cooldowns = [], []
    for shape, size_points in points.items():
        chosen = pick_points(size_points, options.cooldowns)
        top = size_points[-1].budget_flops >= max(sweep.budgets_flops)
        for seed in trunk_seeds(sweep.seeds, options.largest_repeats if top and options.largest_repeats
                                else options.repeats):
            trunk, size_branches, too_early = branches._trunk_and_branches(dense, like, shape, chosen, seed)
            dropped += too_early
            if trunk is not None:
                trunks.append(trunk)
                cooldowns += size_branches
    trunks.sort(key=lambda t: -t.flops)
    spend = sum(t.flops for t in trunks) + sum(branches.cooldown_flops(b) for b in cooldowns)
    grid_flops = grid.make_plan(dataclasses.replace(sweep, design=dataclasses.replace(
        sweep.design, kind="grid", options=None))).total_flops
    hparam = tuple(make_hparam_trial(sweep, size) for size in (sweep.hparams.sizes if sweep.hparams else ()))
    notes = [f"trunks: {len(trunks)} trunks ({len(points)} sizes), {len(cooldowns)} cooldowns "
             f"({options.cooldown_fraction:.0%} {options.decay_shape}), {options.evals} evaluations a trunk; "
             f"spends {spend:.3e} FLOPs, "
             f"the grid {grid_flops:.3e} ({spend / grid_flops:.2f}x); fit with the curve method"]
    extra = {"grid_flops": grid_flops, "trunk_flops": sum(t.flops for t in trunks),
             "cooldown_flops": spend - sum(t.flops for t in trunks),
             "design_options": dataclasses.asdict(options)}
    return Plan(sweep, tuple(trunks + cooldowns), tuple(dropped), tuple(notes), hparam, extra=extra,
                spend_flops=spend)


def points_per_size(sweep) -> tuple[dict, list]:
    """{shape: [_Point]} (module doc: one size per budget, `below` under, `above` over) and
    what was dropped."""
    options: TrunksOptions = sweep.design.options or TrunksOptions()
    per_shape: dict = {}
    for budget, n_star in wanted_sizes(sweep, options):
        [shape] = select_sizes(sweep.model.shapes, n_star, 1, sweep.prior.span, sweep.prior.params)
        per_shape.setdefault(shape, set()).add(budget)
    points, dropped = {}, []
    for shape in sorted(per_shape, key=lambda s: s.param_counts()["total"]):
        largest = max(per_shape[shape])
        reason = infeasible(largest, shape, sweep.train, sweep.model.label(shape))
        if reason:
            dropped.append(Dropped(largest, shape, reason))
            continue
        steps = sweep.train.steps(largest, shape)
        fpt, batch = shape.flops_per_token(), sweep.train.config.batch_tokens
        points[shape] = [branches._Point(steps // 2, steps // 2 * batch * fpt, BRANCH),
                         branches._Point(steps, float(largest), BRANCH)]
    return points, dropped


def wanted_sizes(sweep, options: TrunksOptions) -> list[tuple[float, float]]:
    """(the FLOPs a size's trunk and cooldown spend, the N it aims at), smallest first."""
    budgets, prior = sorted(sweep.budgets_flops), sweep.prior
    ratio = (budgets[-1] / budgets[0]) ** (1 / (len(budgets) - 1)) if len(budgets) > 1 else prior.span ** 2
    low = prior.optimal_params(budgets[0])
    wanted = [(budgets[0], low / prior.span ** k) for k in range(options.below, 0, -1)]
    wanted += [(b, prior.optimal_params(b)) for b in budgets]
    wanted += [(options.above_share * budgets[-1], prior.optimal_params(budgets[-1] * ratio ** k))
               for k in range(1, options.above + 1)]
    return wanted


def trunk_seeds(seeds, repeats: int) -> list[int]:
    """`repeats` distinct seeds per spec seed (the spec's own first: repeats 1 is the spec's seeds)."""
    return [seed * repeats + r for seed in seeds for r in range(repeats)]


def pick_points(points: list, cooldowns: int) -> list:
    """The longest point, and (cooldowns >= 2) the half-length one before it."""
    return points[-1:] if cooldowns <= 1 else points[-2:]
