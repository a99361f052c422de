"""How a study places its trials and when each may start: one module per kind of design.

  grid.py            every budget x size x seed from scratch (the default)
  branches.py        constant-LR trunks with cooldown branches, and their queue
  adaptive.py        rounds that follow the fit; adaptive_queue.py refits as trials land
  trunks.py          a constant-LR trunk and 1-2 cooldowns per size, for the curve method
  shape.py           shapes at a fixed parameter count or compute (Kaplan et al. 2020, Sec. 3.1)
  queue.py           the base TrialQueue: what runs next, asked by the Tune searcher
  next_trials.py     `scaling next`: from finished results, the trials to run next

DESIGNS is the registry: a spec's design.kind (spec/sections/design.py parses its options) names one
entry, whose make_plan(sweep) -> Plan places the trials (with plan/'s arithmetic) and whose
make_queue(plan, todo, store) -> TrialQueue says when each may start. make_plan and make_queue
below are what the CLI and the execution layer call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from scaling_orchestrator.orchestrator.designs import adaptive, branches, grid, shape, trunks
from scaling_orchestrator.orchestrator.designs.queue import TrialQueue
from scaling_orchestrator.orchestrator.plan.build import Plan
from scaling_orchestrator.orchestrator.plan.data import with_unique_tokens
from scaling_orchestrator.orchestrator.plan.placement import placement_notes
from scaling_orchestrator.orchestrator.spec import references
from scaling_orchestrator.orchestrator.spec.sweep import Sweep


class DesignKind(NamedTuple):
    make_plan: Callable[[Sweep], Plan]
    make_queue: Callable[[Plan, list, object], TrialQueue]  # (plan, trials not final, store)


DESIGNS: dict[str, DesignKind] = {
    "grid": DesignKind(grid.make_plan, grid.make_queue),
    "branches": DesignKind(branches.make_plan, branches.make_queue),
    "adaptive": DesignKind(adaptive.make_plan, adaptive.make_queue),
    "shape": DesignKind(shape.make_plan, shape.make_queue),
    "trunks": DesignKind(trunks.make_plan, trunks.make_queue),
}


def make_plan(sweep: Sweep) -> Plan:
    """The sweep's trials: what its spec points to is read first (spec/references.py), then its
    design places the trials, each placed on the cluster as plan.make_trial builds it (resources
    by size, a micro-batch that fits). The plan's notes say what was read, then the design's
    own notes, then what placing changed."""
    sweep = references.resolve(sweep)
    plan = with_unique_tokens(DESIGNS[sweep.design.kind].make_plan(sweep))  # epochs per trial
    placed = placement_notes([*plan.trials, *plan.hparam_trials], sweep.resource_rules)
    return dataclasses.replace(plan, notes=(*references.notes(sweep), *plan.notes, *placed))


def make_queue(plan: Plan, todo, store) -> TrialQueue:
    """The plan's design's queue for `todo` (the trials not yet final)."""
    return DESIGNS[plan.sweep.design.kind].make_queue(plan, todo, store)
