"""The spec's `resources` section: what a trial reserves, optionally by model size.

    resources: {num_workers: 1, cpus_per_worker: 4, gpus_per_worker: 1, memory_per_worker_gb: 24,
                by_size: [{min_params: 3e8, num_workers: 2}, {min_params: 1e9, num_workers: 4}]}

The top-level fields are trial.Resources (every size's); `by_size` lists rules in ascending
min_params (total parameters, ModelShape.param_counts()["total"]), each with Resources fields
to change. A size takes every rule whose min_params it reaches, in order, each on top of the
last (as CSS breakpoints cascade): with the example a 732M-parameter size gets 2 workers and a
1.2B one 4, both 4 CPUs and 1 GPU each. resources_per_worker mappings merge key by key.

More workers make a step data-parallel (DDP: every worker holds the whole model), which makes
a large size's trial shorter; it does not lower the memory per worker, so a size that cannot
fit one sequence on one worker (plan/placement.py) needs a larger GPU, not more of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.spec.trial import Resources
from scaling_orchestrator.orchestrator.spec.validate import (
    SpecError,
    dataclass_fields,
    fail,
    mapping,
    number,
    sequence,
)

PATH = "resources"
BY_SIZE = "by_size"
MIN_PARAMS = "min_params"


@dataclass(frozen=True)
class SizeRule:
    """From min_params total parameters up, these Resources fields change."""

    min_params: float
    changes: tuple[tuple[str, object], ...]  # (field, value) pairs, as the spec gives them

    def apply(self, res: Resources) -> Resources:
        changes = dict(self.changes)
        if "resources_per_worker" in changes:
            changes["resources_per_worker"] = {**res.resources_per_worker, **changes["resources_per_worker"]}
        return dataclasses.replace(res, **changes)


@dataclass(frozen=True)
class ResourceRules:
    """Every size's Resources (`base`) and the by-size rules on top of it."""

    base: Resources = Resources()
    by_size: tuple[SizeRule, ...] = ()


def parse_resources(raw) -> ResourceRules:
    """The `resources` mapping -> ResourceRules, each mistake a one-line SpecError naming the field."""
    raw = {} if raw is None else raw
    fields = tuple(f.name for f in dataclasses.fields(Resources))
    mapping(raw, PATH, fields + (BY_SIZE,))
    base = Resources(**dataclass_fields({k: v for k, v in raw.items() if k != BY_SIZE}, PATH, Resources))
    check_resources(base, PATH)
    items = sequence(
        raw.get(BY_SIZE, []), f"{PATH}.{BY_SIZE}", f"mappings of {MIN_PARAMS} and Resources fields"
    )
    rules, res = [], base
    for i, item in enumerate(items):
        where = f"{PATH}.{BY_SIZE}[{i}]"
        mapping(item, where, (MIN_PARAMS,) + fields)
        if MIN_PARAMS not in item:
            raise SpecError(
                f"{where}.{MIN_PARAMS}: missing; each rule starts at a number of total parameters"
            )
        floor = number(
            item[MIN_PARAMS], f"{where}.{MIN_PARAMS}", "a positive number of parameters", lambda x: x > 0
        )
        if rules and floor <= rules[-1].min_params:
            fail(f"{where}.{MIN_PARAMS}", floor, f"larger than the rule before it ({rules[-1].min_params:g})")
        changes = dataclass_fields({k: v for k, v in item.items() if k != MIN_PARAMS}, where, Resources)
        if not changes:
            raise SpecError(f"{where}: no field to change; give {MIN_PARAMS} and one of {', '.join(fields)}")
        rules.append(SizeRule(floor, tuple(changes.items())))
        res = rules[-1].apply(res)
        check_resources(res, where)
    return ResourceRules(base, tuple(rules))


def check_resources(res: Resources, path: str) -> None:
    """What Resources alone cannot say is wrong: no CPU, or GPUs on an in-process trial."""
    number(res.cpus_per_worker, f"{path}.cpus_per_worker", "a positive number", lambda x: x > 0)
    if res.gpus_per_worker > 0 and res.num_workers == 0:
        fail(
            f"{path}.gpus_per_worker",
            res.gpus_per_worker,
            "0 when num_workers is 0 (the loop then runs inside the Tune trial, CPU only)",
        )


def resources_for(rules: ResourceRules, shape: ModelShape) -> Resources:
    """The Resources of a size: base, then every rule it reaches, in order."""
    params = shape.param_counts()["total"]
    res = rules.base
    for rule in rules.by_size:
        if params >= rule.min_params:
            res = rule.apply(res)
    return res


def rule_label(rules: ResourceRules, shape: ModelShape) -> str:
    """Which rules a size reached, for the plan's notes: "resources.by_size[1]", or "" for none."""
    params = shape.param_counts()["total"]
    reached = [i for i, rule in enumerate(rules.by_size) if params >= rule.min_params]
    return f"{PATH}.{BY_SIZE}[{reached[-1]}]" if reached else ""


__all__ = ["ResourceRules", "SizeRule", "check_resources", "parse_resources", "resources_for", "rule_label"]
