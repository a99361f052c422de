"""How a study places its trials: the spec's `design` section and each kind's options.

  design: grid                      every budget x size x seed from scratch (the default)
  design: {kind: branches, ...}     constant-LR trunks with cooldown branches (designs/branches.py)
  design: {kind: adaptive, ...}     rounds that follow the fit (designs/adaptive.py)
  design: {kind: shape, ...}        shapes at fixed params or compute (designs/shape.py)
  design: {kind: trunks, ...}       a trunk and 1-2 cooldowns per size, read whole (designs/trunks.py)

Parsing a kind's options is data checking, so it lives here with the rest of the spec: each kind
other than grid has a frozen options dataclass and a parser in OPTIONS. What a kind does with
them (its trials, its queue) is in the designs subpackage, whose registry (designs.DESIGNS)
names the same kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaling_orchestrator.analysis.laws.registry import forms
from scaling_orchestrator.orchestrator.spec.validate import (
    SpecError,
    choice,
    fail,
    mapping,
    number,
    sequence,
    whole_number,
)

DECAY_SHAPES = ("1-sqrt", "linear")
POINTS = ("bracket", "below")
ADAPTIVE_KEYS = ("target_flops", "study_budget_flops", "tolerance", "batch", "law", "bootstrap", "trials")
TRIAL_KEYS = ("budget_flops", "n_layer", "d_model", "seed", "round", "reason")
SHAPE_KEYS = ("aspect_ratios", "contexts", "params", "tokens", "params_tolerance", "head_dim")


@dataclass(frozen=True)
class Design:
    kind: str = "grid"
    options: Any = None  # the kind's own frozen dataclass; None for grid


@dataclass(frozen=True)
class BranchesOptions:
    cooldown_fraction: float = 0.2  # of each branch's steps (Hagele et al. 2024: 20% matches cosine)
    decay_shape: str = "1-sqrt"  # Hagele et al. 2024 Eq. 1; "linear" as MiniCPM
    points: str = "bracket"  # "bracket": the grid's (budget, size) points; "below": every smaller budget too
    tokens_per_param: tuple[float, ...] = ()  # extra branch points per size, e.g. (5, 10, 20, 40, 80)


@dataclass(frozen=True)
class AdaptiveOptions:
    target_flops: float
    study_budget_flops: float
    tolerance: float = 1.25  # stop when N*'s 95% interval is within x/÷ 1.25 (hi / lo <= 1.5625)
    batch: int = 0  # trials proposed at a time; 0: the free slots (max_concurrent_trials or 4)
    law: str = "chinchilla"
    bootstrap: int = 200  # run-bootstrap resamples per refit (about 3 s on 2 cores)
    trials: tuple[dict, ...] = ()  # exactly these, no later rounds (`scaling next`)


@dataclass(frozen=True)
class ShapeOptions:
    aspect_ratios: tuple[float, ...]  # d_model / n_layer targets, ascending
    contexts: tuple[int, ...] = ()  # seq_len values for the reference shape, ascending
    params: float = 0.0  # non-embedding N; 0: the prior's N*(C)
    tokens: int = 0  # training tokens of every trial; 0: each spends the budget
    params_tolerance: float = 0.1  # |N_shape / N - 1| allowed
    head_dim: int = 0  # 0: the model section's (a dial's head_dim), else 16


def parse_branches(raw: dict, sweep_raw: dict) -> BranchesOptions:
    mapping(raw, "design", ("cooldown_fraction", "decay_shape", "points", "tokens_per_param"))
    kw = {}
    if "cooldown_fraction" in raw:
        kw["cooldown_fraction"] = number(raw["cooldown_fraction"], "design.cooldown_fraction", "in (0, 1)",
                                         lambda x: 0 < x < 1)
    if "decay_shape" in raw:
        kw["decay_shape"] = choice(raw["decay_shape"], "design.decay_shape", DECAY_SHAPES)
    if "points" in raw:
        kw["points"] = choice(raw["points"], "design.points", POINTS)
    if "tokens_per_param" in raw:
        values = sequence(raw["tokens_per_param"], "design.tokens_per_param", "positive numbers")
        kw["tokens_per_param"] = tuple(sorted({number(v, f"design.tokens_per_param[{i}]", "a positive number",
                                                      lambda x: x > 0) for i, v in enumerate(values)}))
    return BranchesOptions(**kw)


def parse_adaptive(raw: dict, sweep_raw: dict) -> AdaptiveOptions:
    mapping(raw, "design", ADAPTIVE_KEYS)
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
        law=choice(raw.get("law", "chinchilla"), "design.law", adaptive_laws()),
        bootstrap=whole_number(raw.get("bootstrap", 200), "design.bootstrap", minimum=20),
        trials=tuple(parse_trial(item, f"design.trials[{i}]")
                     for i, item in enumerate(sequence(raw.get("trials", []), "design.trials",
                                                       "trials {budget_flops, n_layer, d_model}"))))


def parse_trial(raw, path: str) -> dict:
    """One listed trial of an adaptive design: budget_flops, n_layer, d_model (a shape of the
    model section), seed, round and reason (what `scaling next` said about it)."""
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


def adaptive_laws() -> tuple[str, ...]:
    """The law forms a trial's (N, D) determine (data_constrained also needs unique tokens)."""
    return tuple(name for name, form in forms().items() if not form.required_columns)


def parse_shape(raw: dict, sweep_raw: dict) -> ShapeOptions:
    mapping(raw, "design", SHAPE_KEYS)
    if "aspect_ratios" not in raw:
        raise SpecError("design.aspect_ratios: missing; the d_model / n_layer targets, e.g. [4, 16, 64]")
    aspects = _ascending(raw["aspect_ratios"], "design.aspect_ratios",
                         lambda v, p: number(v, p, "a positive number", lambda x: x > 0))
    contexts = _ascending(raw.get("contexts", []), "design.contexts",
                          lambda v, p: whole_number(v, p, minimum=1), allow_empty=True)
    kw = {"aspect_ratios": aspects, "contexts": contexts}
    if "params" in raw:
        kw["params"] = number(raw["params"], "design.params", "a positive number", lambda x: x > 0)
    if "tokens" in raw:
        kw["tokens"] = whole_number(raw["tokens"], "design.tokens", minimum=1)
    if "params_tolerance" in raw:
        kw["params_tolerance"] = number(raw["params_tolerance"], "design.params_tolerance", "in (0, 1)",
                                        lambda x: 0 < x < 1)
    if "head_dim" in raw:
        kw["head_dim"] = whole_number(raw["head_dim"], "design.head_dim", minimum=1)
    if sweep_raw.get("held_out_budgets_flops"):
        fail("held_out_budgets_flops", sweep_raw["held_out_budgets_flops"],
             "absent for design: shape (no back-test)")
    if "params" in kw and len(sweep_raw.get("budgets_flops") or []) > 1:
        fail("design.params", raw["params"],
             "given with one budget only (several budgets take the prior's N*(C))")
    return ShapeOptions(**kw)


def _ascending(raw, path: str, check, allow_empty: bool = False) -> tuple:
    items = sequence(raw, path, "positive numbers", allow_empty=allow_empty)
    values = [check(v, f"{path}[{i}]") for i, v in enumerate(items)]
    if len(set(values)) != len(values):
        fail(path, items, "without repeats")
    return tuple(sorted(values))


@dataclass(frozen=True)
class TrunksOptions:
    cooldowns: int = 2  # cooldown branches per size: to its budget's tokens, and to half of them
    cooldown_fraction: float = 0.2  # of each branch's steps (Hagele et al. 2024)
    decay_shape: str = "1-sqrt"
    evals: int = 40  # evaluations per trunk, for the curve law (Luo et al. 2025 fit every step)
    below: int = 1  # sizes under the smallest budget's N*: N*/span, N*/span^2, ...
    above: int = 0  # sizes over the largest budget's N*, a budget step apart, each a short trunk
    above_share: float = 0.1  # each size above spends this share of the largest budget
    repeats: int = 1  # independent trunks (seeds) per size and spec seed
    largest_repeats: int = 0  # those of the largest budget's size (0: repeats); it costs the most


def parse_trunks(raw: dict, sweep_raw: dict) -> TrunksOptions:
    mapping(raw, "design", ("cooldowns", "cooldown_fraction", "decay_shape", "evals", "below", "above",
                            "above_share", "repeats", "largest_repeats"))
    if sweep_raw.get("held_out_budgets_flops"):
        raise SpecError("held_out_budgets_flops: a trunk passes every token count below its end, so "
                        "held-out runs would be seen by the fit; judge a trunks study on a separate grid")
    kw = {}
    if "cooldowns" in raw:
        kw["cooldowns"] = whole_number(raw["cooldowns"], "design.cooldowns", minimum=1)
    if "cooldown_fraction" in raw:
        kw["cooldown_fraction"] = number(raw["cooldown_fraction"], "design.cooldown_fraction", "in (0, 1)",
                                         lambda x: 0 < x < 1)
    if "decay_shape" in raw:
        kw["decay_shape"] = choice(raw["decay_shape"], "design.decay_shape", DECAY_SHAPES)
    if "evals" in raw:
        kw["evals"] = whole_number(raw["evals"], "design.evals", minimum=4)
    for key, least in (("below", 0), ("above", 0), ("repeats", 1), ("largest_repeats", 0)):
        if key in raw:
            kw[key] = whole_number(raw[key], f"design.{key}", minimum=least)
    if "above_share" in raw:
        kw["above_share"] = number(raw["above_share"], "design.above_share", "in (0, 1]",
                                   lambda x: 0 < x <= 1)
    return TrunksOptions(**kw)


# kind -> its options' parser (raw options, the whole raw spec) -> frozen options; grid has none
OPTIONS = {"branches": parse_branches, "adaptive": parse_adaptive, "shape": parse_shape,
           "trunks": parse_trunks}
KINDS = ("grid", *OPTIONS)


def parse_design(raw, sweep_raw: dict) -> Design:
    """`grid` (or absent), a kind's name with its defaults, or `{kind: KIND, ...options}`
    checked by the kind's parser."""
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
    return Design(kind, OPTIONS[kind](options, sweep_raw))
