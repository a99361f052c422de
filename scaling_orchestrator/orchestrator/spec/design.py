"""How a study places its trials: the spec's `design` section, one module per kind.

  design: grid                      every budget x size x seed from scratch (the default)
  design: {kind: branches, ...}     constant-LR trunks with cooldown branches (design_branches.py)
  design: {kind: adaptive, ...}     rounds that follow the fit (design_adaptive.py)
  design: {kind: shape, ...}        shapes at fixed params or compute (design_shape.py)

A kind other than grid is one module, `orchestrator/design_<kind>.py`, exposing
  parse_design(raw, sweep_raw) -> options   its options (a frozen dataclass), checked once
  make_plan(sweep) -> Plan                  its trials (plan.py's helpers do the arithmetic)
  make_queue(plan, todo, store) -> TrialQueue   optional: when each trial may start
                                            (without it: every trial at once, longest first)
Modules are imported by name when a spec names their kind, so a design may import plan.py,
queue.py and the analysis without an import cycle through spec.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from scaling_orchestrator.orchestrator.spec.validate import SpecError, choice, fail

KINDS = ("grid", "branches", "adaptive", "shape")


@dataclass(frozen=True)
class Design:
    kind: str = "grid"
    options: Any = None  # the kind's own frozen dataclass; None for grid


def design_module(kind: str):
    """scaling_orchestrator.orchestrator.design_<kind>: parse_design, make_plan and maybe make_queue."""
    return importlib.import_module(f"scaling_orchestrator.orchestrator.designs.{kind}")


def parse_design(raw, sweep_raw: dict) -> Design:
    """`grid` (or absent), a kind's name with its defaults, or `{kind: KIND, ...options}`
    checked by the kind's own parse_design."""
    if raw is None:
        return Design()
    if isinstance(raw, str):
        kind, options = choice(raw, "design", KINDS), {}
    elif isinstance(raw, dict):
        if "kind" not in raw:
            raise SpecError(f"design.kind: missing; one of {', '.join(KINDS)}")
        kind = choice(raw["kind"], "design.kind", KINDS)
        options = {k: v for k, v in raw.items() if k != "kind"}
    else:
        fail("design", raw, f"one of {', '.join(KINDS)}, or a mapping with kind: and its options")
    if kind == "grid":
        if options:
            raise SpecError(f"design: grid takes no options, got {', '.join(sorted(map(str, options)))}")
        return Design()
    return Design(kind, design_module(kind).parse_design(options, sweep_raw))
