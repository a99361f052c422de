"""`design: grid` (the default): every budget x size x seed, each its own run from scratch.

The rule, per budget C (fitting and held-out alike) and seed:

1. Place the prior optimum N*(C) = k C^a (Sweep.prior). Chinchilla's default, C = 6ND with
   D = 20N (Hoffmann et al. 2022, Table 3), gives N* = sqrt(C/120): 1e12 FLOPs -> 91k params.
2. Take `sizes_per_budget` targets log-spaced over N*/span .. N*·span (span 4: 1/4x..4x, the
   width of Chinchilla's IsoFLOP valleys, Fig. 3) and give each the nearest unused candidate
   shape in log params, the middle target first (plan.select_sizes). When fewer than 2k-1
   candidates lie inside the span (a coarse dial), take the consecutive run of candidates
   centred on N* instead. An N* off the dial's end gives a one-sided bracket; the plan notes it.
3. Tokens: steps = round(C / (flops_per_token * batch_tokens)) whole optimizer steps with the
   exact Chinchilla App. F count, so the trial's FLOPs = steps * batch_tokens * flops_per_token
   are within 2% of C (rounding costs at most 0.5/steps: 25 steps -> 2%). A size with fewer
   than train.min_steps steps (Recipe.too_few_steps, the spec's rule too), or off by more than
   2%, is dropped with the reason recorded (plan.infeasible); a budget left with fewer than 3
   sizes is a SpecError (a parabola needs three points).
4. Evaluate every eval_every_tokens rounded to whole steps, else steps // evals_per_trial
   (scaling_orchestrator.models.training.config.eval_interval_tokens, the one cadence rule).
5. Every trial carries its size's one name, ModelSpec.label ("d4"), as size_label; held-out
   budgets' trials are group "held_out": the back-test fits without them and predicts them,
   the headline fit uses every run.

lr: train.lr, or lr*(N) from a fit (train.lr: {from_fit}), the plan notes each size outside
the sizes that law was fitted on. An `hparams` section adds one base trial per search size
(kind "hparam", group "", size_label the size's label); execution/search.py varies it, so
the search's FLOPs are an upper bound: trials_per_size * tokens * flops_per_token, less what
ASHA stops. Every trial may start at once (the base TrialQueue, longest first).
"""

from __future__ import annotations

from scaling_orchestrator.analysis.data.schema import HELD_OUT
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.designs.queue import TrialQueue
from scaling_orchestrator.orchestrator.fmt import si
from scaling_orchestrator.orchestrator.plan.build import (
    MIN_SIZES,
    Dropped,
    Plan,
    budgets,
    infeasible,
    lr_law_notes,
    make_hparam_trial,
    make_trial,
    param_count,
    select_sizes,
)
from scaling_orchestrator.orchestrator.spec.sweep import Sweep
from scaling_orchestrator.orchestrator.spec.validate import SpecError


def make_plan(sweep: Sweep) -> Plan:
    """Every budget x size x seed (the module doc's rule)."""
    trials, dropped, notes = [], [], []
    for budget in budgets(sweep):
        kept, note = budget_sizes(sweep, budget, dropped)
        notes += note
        group = HELD_OUT if budget in sweep.held_out_budgets_flops else ""
        trials += [make_trial(sweep, budget, shape, seed, group) for shape in kept for seed in sweep.seeds]
    ids = [t.trial_id for t in trials]
    assert len(set(ids)) == len(ids), "duplicate trial ids"  # distinct (budget, shape, seed) by construction
    hparam = tuple(make_hparam_trial(sweep, size) for size in (sweep.hparams.sizes if sweep.hparams else ()))
    notes += lr_law_notes(sweep, trials + list(hparam))
    return Plan(sweep, tuple(trials), tuple(dropped), tuple(notes), hparam)


def budget_sizes(sweep: Sweep, budget: float, dropped: list) -> tuple[list[ModelShape], list[str]]:
    """The sizes that spend `budget` (those that cannot are appended to `dropped`), and a note
    when N* lies outside them; a SpecError when fewer than MIN_SIZES are left."""
    n_star = sweep.prior.optimal_params(budget)
    prior = sweep.prior
    chosen = select_sizes(sweep.model.shapes, n_star, sweep.sizes_per_budget, prior.span, prior.params)
    kept = []
    for shape in chosen:
        reason = infeasible(budget, shape, sweep.train, sweep.model.label(shape))
        if reason:
            dropped.append(Dropped(budget, shape, reason))
        else:
            kept.append(shape)
    if len(kept) < MIN_SIZES:
        field = "held_out_budgets_flops" if budget in sweep.held_out_budgets_flops else "budgets_flops"
        raise SpecError(
            f"{sweep.source}: {field} {budget:g}: only {len(kept)} of "
            f"{len(chosen)} sizes fit it (need {MIN_SIZES}): {dropped[-1].reason}"
        )
    counts = [param_count(s, sweep.prior.params) for s in kept]
    if min(counts) < n_star < max(counts):
        return kept, []
    side = "above" if n_star >= max(counts) else "below"
    return kept, [
        f"budget {budget:g}: N* {si(n_star)} lies {side} every planned size "
        f"({si(min(counts))}..{si(max(counts))}): one-sided bracket"
    ]


def make_queue(plan: Plan, todo, store) -> TrialQueue:
    """Every trial of `todo` at once, longest first."""
    return TrialQueue(todo)
