"""`design: {kind: shape, ...}`: at a fixed parameter count, vary the shape and the context.

Kaplan et al. 2020 (Sec. 3.1, Fig. 5) found the loss of a Transformer depends weakly on its
shape at fixed non-embedding N: within a few percent over aspect ratios d_model / n_layer of
about 20..200 (50M params: aspect 6..~200 within 3%). This design plans that measurement, per
budget C in budgets_flops:

- N: `params:`, or the prior's N*(C), counted as Kaplan's non-embedding N either way (the
  position table grows with the context, so a total N would not stay fixed along that axis);
- the aspect sweep: for each `aspect_ratios` target a, the n_layer x d_model (d_model a multiple
  of head_dim) whose non-embedding N is within `params_tolerance` of N, nearest a in log:
  N 2e5, a 32, head_dim 8 -> 2L x 88d (aspect 44, 1.88e5); all at the context model.seq_len;
- the context sweep: the reference shape (the aspect target in the middle of the list) at each
  of `contexts` (the trial at model.seq_len is the aspect sweep's own);
- each trial spends C in whole optimizer steps (plan.make_trial: within 2%), so a longer context,
  whose attention costs more FLOPs per token (ModelShape.attention_flops_per_token), trains on
  fewer tokens; `tokens: D` trains every trial on D tokens instead (its FLOPs then differ).

A context must divide train.batch_tokens (and micro_batch_tokens), fit in train.eval_tokens, and
fit the corpus: the data is one token stream per split (documents joined, models/data/), so
the limit is the val split's length, which evaluation windows are cut from (read from the
prepared data: the first plan of a corpus tokenizes it, as a trial would). Rows are kind
"shape"; analysis.report.shape_study reads loss against aspect ratio and context from them.
The options are spec/sections/design.py's ShapeOptions.
"""

from __future__ import annotations

import dataclasses
import math

from scaling_orchestrator.models.data.tokens import prepare_data
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.designs.queue import TrialQueue
from scaling_orchestrator.orchestrator.fmt import si
from scaling_orchestrator.orchestrator.plan.build import (
    Plan,
    infeasible,
    make_hparam_trial,
    make_trial,
    trial_lr,
)
from scaling_orchestrator.orchestrator.spec.sections.design import ShapeOptions
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError, fail

KIND = "shape"  # the rows' kind: not IsoFLOP points, so `scaling fit` leaves them out
MAX_ASPECT_MISS = math.sqrt(2)  # a realized aspect ratio within a factor sqrt(2) of its target


def make_plan(sweep) -> Plan:
    try:
        return _plan(sweep)
    except SpecError as e:  # as the grid says a budget's error: after the spec's name
        raise SpecError(f"{sweep.source}: {e}") from None


def make_queue(plan: Plan, todo, store) -> TrialQueue:
    """Every trial of `todo` at once, longest first (as the grid)."""
    return TrialQueue(todo)


def _plan(sweep) -> Plan:
    options: ShapeOptions = sweep.design.options
    # The study's own sizes, named "L2xD88" ("L2xD88xT512" at another context) in rows and plan.
    head_dim = options.head_dim or sweep.model.head_dim or 16
    model = dataclasses.replace(
        sweep.model,
        head_dim=head_dim,
        axis="",
        aspect_ratio=0,
        fixed=0,
        shapes=(),
        dial=f"the shape study's own (heads of {head_dim})",
    )
    sweep = dataclasses.replace(sweep, model=model)
    contexts = _check_contexts(sweep, options)
    trials, notes, studies = [], [], []
    for budget in sweep.budgets_flops:
        target = options.params or sweep.prior.optimal_params(budget)
        shapes = [
            _shape_at(model, target, a, options.params_tolerance, f"design.aspect_ratios[{i}]")
            for i, a in enumerate(options.aspect_ratios)
        ]
        _distinct(shapes, options.aspect_ratios, model)
        reference = shapes[(len(shapes) - 1) // 2]
        runs = shapes + [reference.with_context(t) for t in contexts if t != reference.seq_len]
        trials += [_trial(sweep, budget, shape, seed, options) for shape in runs for seed in sweep.seeds]
        notes.append(_note(budget, target, shapes, reference, contexts, model))
        studies.append(
            {
                "budget_flops": budget,
                "params_target": target,
                "reference": model.label(reference),
                "aspect_ratios": [_shape_row(model, s, a) for s, a in zip(shapes, options.aspect_ratios)],
                "contexts": sorted({reference.seq_len, *contexts}),
            }
        )
    if contexts:
        notes.append(
            f"contexts: up to {max(contexts)} tokens; the val split holds {contexts_limit(sweep.data):,} "
            f"(windows cross document boundaries: the data is one stream per split)"
        )
    hparam = tuple(make_hparam_trial(sweep, size) for size in (sweep.hparams.sizes if sweep.hparams else ()))
    shapes = sorted(
        {t.shape.with_context(model.seq_len) for t in trials}, key=lambda s: s.param_counts()["total"]
    )
    sweep = dataclasses.replace(sweep, model=dataclasses.replace(model, shapes=tuple(shapes)))
    return Plan(
        sweep,
        tuple(trials),
        (),
        tuple(notes),
        hparam,
        extra={"shape_study": studies, "design_options": dataclasses.asdict(options)},
    )


def _shape_at(model, params: float, aspect: float, tolerance: float, path: str) -> ModelShape:
    """The n_layer x d_model within tolerance of `params` non-embedding params whose aspect ratio
    is nearest `aspect` in log (ties: the closer count)."""
    best, layers = None, 1
    while True:
        fits = _widths_for(model, layers, params)
        if not fits:  # even head_dim wide, this depth holds too many params
            break
        for shape in fits:
            miss = abs(shape.param_counts()["non_embedding"] / params - 1)
            if miss <= tolerance:
                key = (abs(math.log(shape.aspect_ratio / aspect)), miss)
                best = min(best, (key, shape), key=lambda x: x[0]) if best else (key, shape)
        layers += 1
    if best is None or math.exp(best[0][0]) > MAX_ASPECT_MISS:
        near = f"; nearest {model.label(best[1])} (aspect {best[1].aspect_ratio:.3g})" if best else ""
        fail(
            path,
            aspect,
            f"reachable at {si(params)} non-embedding params within {tolerance:.0%} in heads of "
            f"{model.head_dim} (within a factor {MAX_ASPECT_MISS:.2f}){near}",
        )
    return best[1]


def _widths_for(model, layers: int, params: float) -> list[ModelShape]:
    """At this depth, the multiples of head_dim just below and above params (12 L d^2 ~ N);
    under mup none narrower than the base width."""
    step = model.head_dim
    narrowest = max(step, -(-model.base_d_model // step) * step)
    if model.make(layers, narrowest).param_counts()["non_embedding"] > params * 2:
        return []
    guess = int(math.sqrt(params / (12 * layers)) // step * step)
    widths = {max(narrowest, guess + k * step) for k in (-1, 0, 1, 2)}
    return [model.make(layers, w) for w in sorted(widths)]


def _distinct(shapes, aspects, model) -> None:
    for i in range(1, len(shapes)):
        if shapes[i] == shapes[i - 1]:
            fail(
                f"design.aspect_ratios[{i}]",
                aspects[i],
                f"a shape of its own: aspect ratios {aspects[i - 1]:g} "
                f"and {aspects[i]:g} both give {model.label(shapes[i])}; space them further apart",
            )


def _check_contexts(sweep, options: ShapeOptions) -> tuple[int, ...]:
    """Each context divides the batch, fits the eval slice and the corpus's val split."""
    config = sweep.train.config
    for i, t in enumerate(options.contexts):
        path = f"design.contexts[{i}]"
        for name in ("batch_tokens", "micro_batch_tokens"):
            value = getattr(config, name)
            if value and value % t:
                fail(path, t, f"a divisor of train.{name} ({value}): whole sequences per step")
        if t > config.eval_tokens:
            fail(path, t, f"at most train.eval_tokens ({config.eval_tokens}): one held-out window at least")
    if options.contexts:
        limit = contexts_limit(sweep.data)
        longest = max(options.contexts)
        if longest + 1 > limit:
            fail(
                f"design.contexts[{len(options.contexts) - 1}]",
                longest,
                f"at most {limit - 1}: the corpus's val split holds "
                f"{limit} tokens, one window of context + 1",
            )
    return options.contexts


def contexts_limit(data) -> int:
    """Tokens in the val split: the one stream evaluation windows of context + 1 are cut from."""
    return int(len(prepare_data(data).val))


def _trial(sweep, budget: float, shape: ModelShape, seed: int, options: ShapeOptions) -> TrialSpec:
    if options.tokens:
        return _trial_of_tokens(sweep, budget, shape, seed, options.tokens)
    trial = make_trial(sweep, budget, shape, seed)
    reason = infeasible(budget, shape, sweep.train, trial.size_label)
    if reason:
        fail("budgets_flops", budget, f"enough for every shape ({reason})")
    return dataclasses.replace(trial, kind=KIND)


def _trial_of_tokens(sweep, budget: float, shape: ModelShape, seed: int, tokens: int) -> TrialSpec:
    """tokens rounded to whole steps; budget_flops stays the study's budget (the key its rows
    are grouped by), its flops are what it spends."""
    recipe = sweep.train
    batch = recipe.config.batch_tokens
    steps = max(1, round(tokens / batch))
    short = recipe.too_few_steps(steps)
    if short:
        fail("design.tokens", tokens, f"larger: {short}")
    total = steps * batch
    config = dataclasses.replace(
        recipe.config,
        total_tokens=total,
        seed=seed,
        eval_every_tokens=recipe.eval_every_tokens(total, batch),
        lr=trial_lr(recipe, shape),
    )
    return TrialSpec(
        sweep=sweep.name,
        kind=KIND,
        shape=shape,
        data=sweep.data,
        train=config,
        budget_flops=float(budget),
        resources=sweep.resources,
        size_label=sweep.model.label(shape),
        simulate=sweep.simulate,
        trainer=sweep.backend,
    )


def _shape_row(model, shape: ModelShape, target: float) -> dict:
    return {
        "target": target,
        "label": model.label(shape),
        "n_layer": shape.n_layer,
        "d_model": shape.d_model,
        "aspect_ratio": shape.aspect_ratio,
        "non_embedding_params": shape.param_counts()["non_embedding"],
    }


def _note(budget: float, target: float, shapes, reference, contexts, model) -> str:
    counts = [s.param_counts()["non_embedding"] for s in shapes]
    aspects = [s.aspect_ratio for s in shapes]
    line = (
        f"shape at {budget:g} FLOPs: non-embedding N {si(target)} (realized {min(counts) / target - 1:+.0%}.."
        f"{max(counts) / target - 1:+.0%}); aspect ratios {min(aspects):.3g}..{max(aspects):.3g} "
        f"({max(aspects) / min(aspects):.3g}x) at context {reference.seq_len}"
    )
    if contexts:
        span = sorted({reference.seq_len, *contexts})
        line += f"; contexts {span[0]}..{span[-1]} ({span[-1] / span[0]:.3g}x) at {model.label(reference)}"
    return line
