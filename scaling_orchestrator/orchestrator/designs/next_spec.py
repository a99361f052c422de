"""The spec `scaling next` writes: the study's own spec with the chosen trials listed.

Every section of the spec the study ran from (kept as written in _plan.json: throughput,
prior, resources by size, hparams, train with its lr law, simulate, ...) is copied, so the
plan of the next round estimates its time and trains its trials as the first round did; only
name and storage (the same study, the same folder), budgets_flops and seeds (those of the
chosen trials) and design (adaptive, the trials listed with their round and reason) differ,
and held_out_budgets_flops goes (the adaptive design has none). The model section stays as
written when its sizes include every chosen one; otherwise, and for a folder whose plan file
predates the spec being kept, the sections are rebuilt from the template trial (the explicit
shapes, its data, recipe and resources).
"""

from __future__ import annotations

import copy
import dataclasses

from scaling_orchestrator.models.shape import LLAMA_FIELDS
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.spec.sections.model import parse_model
from scaling_orchestrator.orchestrator.spec.sweep import TOP_KEYS


def spec_of(proposal, by_id: dict, template, name: str, results: str, *, target_flops: float,
            budget_flops: float, tolerance: float, law: str, source: dict | None = None) -> dict:
    """The spec `scaling run` accepts for the chosen trials; source: the study's spec as
    written (None: rebuilt from the template trial)."""
    chosen = [by_id[c.candidate.key] for c in proposal.choices]
    design = {
        "kind": "adaptive",
        "target_flops": target_flops,
        "study_budget_flops": budget_flops,
        "tolerance": tolerance,
        "law": law,
        "trials": [
            {"budget_flops": t.budget_flops, "n_layer": t.shape.n_layer, "d_model": t.shape.d_model,
             "seed": t.train.seed, "round": c.round, "reason": c.reason}
            for t, c in zip(chosen, proposal.choices)
        ],
    }
    spec = copy.deepcopy(source) if isinstance(source, dict) else rebuilt(template)
    spec.pop("held_out_budgets_flops", None)
    spec.update(name=name, storage=results, budgets_flops=sorted({t.budget_flops for t in chosen}),
                seeds=sorted({t.train.seed for t in chosen}), design=design)
    if not isinstance(source, dict) or not holds(spec, chosen, template):
        spec["model"] = model_section(template, [*by_id.values(), *chosen])
    # the sections in the order the spec documents them (the plan file keeps them sorted)
    return {**{k: spec[k] for k in TOP_KEYS if k in spec}, **spec}


def holds(spec: dict, chosen, template) -> bool:
    """Whether the spec's model section has every chosen size (a dial may not reach one the
    rows name)."""
    try:
        model = parse_model(spec["model"], template.shape.vocab_size)
    except (KeyError, TypeError, ValueError):
        return False
    sizes = {(s.n_layer, s.d_model) for s in model.shapes}
    return all((t.shape.n_layer, t.shape.d_model) in sizes for t in chosen)


def rebuilt(template) -> dict:
    """The sections a trial carries: data, train (what differs from TrainConfig's defaults),
    resources, simulate, backend."""
    defaults = TrainConfig(total_tokens=template.train.batch_tokens, batch_tokens=template.train.batch_tokens)
    skip = ("total_tokens", "seed", "eval_every_tokens", "eval_at_tokens")
    train = {
        f.name: getattr(template.train, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in skip and getattr(template.train, f.name) != getattr(defaults, f.name)
    }
    train["batch_tokens"] = template.train.batch_tokens
    spec = {"sizes_per_budget": 3, "data": dataclasses.asdict(template.data), "train": train,
            "resources": dataclasses.asdict(template.resources)}
    if template.simulate:
        spec["simulate"] = template.simulate
    if template.trainer:
        spec["backend"] = {k: v for k, v in template.trainer.items() if k != "spec_dir"}
    return spec


def model_section(template, trials) -> dict:
    """The sizes of `trials` listed as shapes, with the template's seq_len and parametrization."""
    shapes = sorted({t.shape for t in trials}, key=lambda s: s.param_counts()["total"])
    shape0 = template.shape
    model = {
        "seq_len": shape0.seq_len,
        "shapes": [{"n_layer": s.n_layer, "d_model": s.d_model, "n_head": s.n_head, "d_ff": s.d_ff,
                    "tied_embeddings": s.tied_embeddings} for s in shapes],
    }
    if shape0.parametrization != "standard":
        model.update(parametrization=shape0.parametrization, base_d_model=shape0.base_d_model,
                     base_head_dim=shape0.base_head_dim)
    if shape0.block != "gpt2":  # the block and its options where not their defaults
        model.update(block=shape0.block, **{k: getattr(shape0, k) for k, default in LLAMA_FIELDS.items()
                                            if getattr(shape0, k) != default})
    return model
