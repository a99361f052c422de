"""The sweep spec: a YAML file -> a frozen, fully validated `Sweep`, before any compute is spent.

Every mistake is a `SpecError` of one line naming the dotted field, the value and what is
allowed ("budgets_flops[1]: -5 must be a positive number"); the checks are spec/validate.py's.
Relative paths (data.corpus, prior.from_fit, storage) are relative to the current directory.
examples/demo.yaml comments every section. Sections [defaults]:

  name, budgets_flops, model   required (budgets_flops, the IsoFLOP budgets, not for a search alone)
  held_out_budgets_flops  each > max(budgets_flops); ordinary trials (kind "scaling", group
                          "held_out"): the back-test fits without them and predicts them; the
                          headline fit then uses every run, these included [[]]
  sizes_per_budget [5], seeds [[0]]   >= 3 sizes (a parabola); one trial per budget x size x seed
  model                   depth: {min, max} of the size dial, or shapes: [...]; seq_len (sections/model.py);
                          counts: "pkg.mod:function" for a model of the user's own (sections/counts.py)
  prior                   tokens_per_param [20] | coefficient + exponent (N* = k C^a) | from_fit
                          (`scaling fit --json` output, read by resolve: spec/references.py);
                          span [4]: sizes cover N*/span..N*·span;
                          params: total [Chinchilla] | non_embedding (Kaplan)
  data, train, resources  DataSpec (sections/data.py), Recipe (batch_tokens required), trial.Resources;
                          the corpus is listed here as every trial would check it (check_data),
                          or, a cluster's path, where the study runs (spec/paths.py)
  hparams, train.lr: {from_fit}   a search at a few sizes; lr*(N) of a fit (spec/sections/hparams.py)
  max_concurrent_trials [runner decides], max_failures [2], storage [results/<name>; NFS, s3://, gs://]
  throughput              flops_per_second per trial, overhead_seconds_per_trial: estimates only
  design [grid]           grid | {kind: branches | adaptive | shape, ...} (sections/design.py)
  simulate                {law, params, noise, seed}: losses drawn from a law: a rehearsal
  backend [torch]         torch | simulate | {kind: command, command} | {kind: python, function}
  tracking [none]         wandb, mlflow, tensorboard: a run per trial (spec/sections/tracking.py)

Parsing reads no fit or results file: prior.from_fit and train.lr: {from_fit} / {from_search}
are kept as written, and `resolve(sweep)` (spec/references.py; make_plan runs it) reads them.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.orchestrator.spec.paths import check_spec_data
from scaling_orchestrator.orchestrator.spec.sections.backend import parse_backend
from scaling_orchestrator.orchestrator.spec.sections.counts import parse_model_section
from scaling_orchestrator.orchestrator.spec.sections.data import parse_data
from scaling_orchestrator.orchestrator.spec.sections.design import Design, parse_design
from scaling_orchestrator.orchestrator.spec.sections.hparams import (
    HparamSpec,
    parse_hparams,
)
from scaling_orchestrator.orchestrator.spec.sections.model import ModelSpec
from scaling_orchestrator.orchestrator.spec.sections.prior import Prior, parse_prior
from scaling_orchestrator.orchestrator.spec.sections.resources import ResourceRules, parse_resources
from scaling_orchestrator.orchestrator.spec.sections.simulate import parse_simulate
from scaling_orchestrator.orchestrator.spec.sections.tracking import Tracking, parse_tracking
from scaling_orchestrator.orchestrator.spec.sections.train import Recipe, parse_recipe
from scaling_orchestrator.orchestrator.spec.trial import Resources
from scaling_orchestrator.orchestrator.spec.validate import (
    SpecError,
    fail,
    mapping,
    number,
    sequence,
    whole_number,
)

__all__ = ["ModelSpec", "Prior", "Recipe", "SpecError", "Sweep", "load_sweep", "parse_sweep"]

# Defaults for time estimates. CPU, per CPU of a trial: the demo measured 4.5e10 FLOP/s for each
# one-CPU trial with two running at once on a 2-core machine (16 trials, 3.52e13 FLOPs, 414 s:
# 3.52e13 / 414 s / 2 = 4.3e10 with overhead). With 2 s overhead a trial the estimate is
# (3.52e13 / 4.5e10 + 16 x 2 s) / 2 = 407 s against 414 s; the earlier 1.5e11 (a bare step on 2
# threads) gave 2.4x too little time. GPU: 40% MFU of an H100 SXM's 989e12 dense bf16 FLOP/s =
# 3.96e14 per GPU. Overhead: a Tune function trial costs ~1.5 s, one with a TorchTrainer worker
# group ~20 s.
CPU_FLOPS_PER_SECOND = 4.5e10
GPU_FLOPS_PER_SECOND = 0.4 * 989e12
TOP_KEYS = (
    "name",
    "budgets_flops",
    "held_out_budgets_flops",
    "sizes_per_budget",
    "seeds",
    "model",
    "prior",
    "data",
    "train",
    "resources",
    "max_concurrent_trials",
    "max_failures",
    "storage",
    "throughput",
    "hparams",
    "design",
    "simulate",
    "backend",
    "tracking",
)


@dataclass(frozen=True)
class Sweep:
    name: str
    budgets_flops: tuple[float, ...]  # ascending
    held_out_budgets_flops: tuple[float, ...]
    sizes_per_budget: int
    model: ModelSpec
    prior: Prior
    data: DataSpec
    train: Recipe
    seeds: tuple[int, ...]
    resources: Resources
    max_concurrent_trials: int | None
    max_failures: int
    storage: str
    flops_per_second: float  # per trial, for time estimates only
    overhead_seconds_per_trial: float
    source: str = "<dict>"
    hparams: HparamSpec | None = None  # None without a search
    design: Design = Design()  # how trials are placed (spec/sections/design.py): grid by default
    simulate: dict | None = None
    backend: dict | None = None  # a trainer of the user's own (sections/backend.py); None: torch/simulate
    resource_rules: ResourceRules = ResourceRules()  # by size (sections/resources.py); base = resources
    tracking: Tracking = Tracking()  # trackers with a run per trial (sections/tracking.py): none by default
    # the mapping as written, every section: kept in _plan.json so `scaling next` writes a spec
    # that differs from it only in what it chose (throughput, prior, hparams... as they were)
    spec: dict | None = field(default=None, compare=False, repr=False)


def load_sweep(path: str | os.PathLike) -> Sweep:
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise SpecError(f"{source}: cannot read the spec ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"{source}: not valid YAML{line}: {getattr(e, 'problem', None) or e}") from None
    return parse_sweep(raw, source)


def parse_sweep(raw, source: str = "<dict>") -> Sweep:
    try:
        return _parse(raw, source)
    except ValueError as e:  # SpecError, or a constructor's own check (ModelShape, TrainConfig)
        raise SpecError(f"{source}: {e}") from None


def _parse(raw, source: str) -> Sweep:
    if raw is None:
        raise SpecError("the spec is empty; expected a mapping with name, budgets_flops and model")
    mapping(raw, "spec", TOP_KEYS)
    for key in ("name", "model") + (() if "hparams" in raw else ("budgets_flops",)):
        if key not in raw:  # a spec that is only a search needs no budgets
            raise SpecError(f"{key}: missing; name, budgets_flops (or hparams) and model are required")
    name = raw["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        fail("name", name, "a string of letters, digits, '_', '.', '-'")
    budgets = _budgets(raw.get("budgets_flops", []), "budgets_flops", allow_empty="budgets_flops" not in raw)
    held_out = _budgets(raw.get("held_out_budgets_flops", []), "held_out_budgets_flops")
    if held_out and held_out[0] <= max(budgets, default=math.inf):
        fail(
            "held_out_budgets_flops",
            list(held_out),
            f"larger than every budgets_flops (max {budgets[-1]:g})"
            if budgets
            else "empty when there are no budgets_flops (nothing to extrapolate from)",
        )
    sizes = whole_number(raw.get("sizes_per_budget", 5), "sizes_per_budget", minimum=3)
    data = parse_data(raw.get("data", {}))
    model = parse_model_section(raw["model"], data.effective_vocab_size, source)
    if sizes > len(model.shapes) and budgets:
        fail("sizes_per_budget", sizes, f"at most the {len(model.shapes)} sizes the model section gives")
    train = parse_recipe(raw.get("train", {}), model)
    rules = parse_resources(raw.get("resources", {}))
    resources = rules.base
    _check_smallest_model(budgets, model, train)
    # What every trial's prepare_data would refuse, from a listing of the corpus (no text read),
    # unless the corpus is the cluster's: then the driver and workers check it (spec/paths.py).
    check_spec_data(data, model.seq_len, resources)
    seeds, mct = _seeds(raw.get("seeds", [0])), raw.get("max_concurrent_trials")
    return Sweep(
        name=name,
        budgets_flops=budgets,
        held_out_budgets_flops=held_out,
        sizes_per_budget=sizes,
        model=model,
        prior=parse_prior(raw.get("prior", {})),
        data=data,
        train=train,
        seeds=seeds,
        resources=resources,
        max_concurrent_trials=None if mct is None else whole_number(mct, "max_concurrent_trials", minimum=1),
        max_failures=whole_number(raw.get("max_failures", 2), "max_failures", minimum=0),
        storage=_storage(raw.get("storage", f"results/{name}")),
        **_throughput(raw.get("throughput", {}), resources),
        source=source,
        hparams=parse_hparams(raw["hparams"], model, train) if "hparams" in raw else None,
        design=parse_design(raw.get("design"), raw),
        simulate=None if raw.get("simulate") is None else parse_simulate(raw["simulate"]),
        backend=parse_backend(raw.get("backend"), source, simulate="simulate" in raw),
        resource_rules=rules,
        tracking=parse_tracking(raw.get("tracking")),
        spec=copy.deepcopy(raw),
    )


def _budgets(value, path: str, *, allow_empty: bool = True) -> tuple[float, ...]:
    items = sequence(value, path, "positive numbers of FLOPs (e.g. 1e12)", allow_empty=allow_empty)
    out = [number(v, f"{path}[{i}]", "a positive number", lambda x: x > 0) for i, v in enumerate(items)]
    return tuple(sorted(out)) if len(set(out)) == len(out) else fail(path, items, "without repeats")


def _seeds(value) -> tuple[int, ...]:
    items = sequence(value, "seeds", "whole numbers", allow_empty=False)
    seeds = tuple(whole_number(v, f"seeds[{i}]") for i, v in enumerate(items))
    return seeds if len(set(seeds)) == len(seeds) else fail("seeds", list(seeds), "without repeats")


def _storage(value) -> str:
    scheme = re.match(r"([a-z0-9+]+)://", value) if isinstance(value, str) else None
    if (
        not isinstance(value, str)
        or not value.strip()
        or (scheme and scheme.group(1) not in ("s3", "gs", "file"))
    ):
        fail("storage", value, "a directory or NFS path, or an s3://, gs:// or file:// URI")
    return value


def _throughput(raw, resources: Resources) -> dict:
    mapping(raw, "throughput", ("flops_per_second", "overhead_seconds_per_trial"))
    gpus = resources.gpus_per_trial
    rate = GPU_FLOPS_PER_SECOND * gpus if gpus else CPU_FLOPS_PER_SECOND * resources.cpus_per_trial
    rate = number(
        raw.get("flops_per_second", rate),
        "throughput.flops_per_second",
        "a positive number (FLOP/s per trial)",
        lambda x: x > 0,
    )
    overhead = number(
        raw.get("overhead_seconds_per_trial", 20.0 if resources.num_workers else 2.0),
        "throughput.overhead_seconds_per_trial",
        "a number >= 0",
        lambda x: x >= 0,
    )
    return {"flops_per_second": rate, "overhead_seconds_per_trial": overhead}


def _check_smallest_model(budgets, model: ModelSpec, train: Recipe) -> None:
    """The smallest budget must give the cheapest candidate train.min_steps (the planner drops
    any other size short of them, budget by budget): d1 at 2048 tokens a step needs 1.23e10."""
    if not budgets:  # only a search
        return
    cheapest = min(model.shapes, key=lambda s: s.flops_per_token())
    short = train.too_few_steps(train.steps(budgets[0], cheapest))
    if short:
        need = cheapest.flops_per_token() * train.config.batch_tokens * train.min_steps
        fail(
            "budgets_flops[0]",
            budgets[0],
            f">= {need:.3g}: the smallest model ({model.label(cheapest)}) gets {short}",
        )
