"""The spec's hyperparameter parts: the `hparams` search section and `train.lr: {from_fit: PATH}`
or `{from_search: RESULTS_DIR}` as written (spec/references.py reads what they point to).

A search tunes the training recipe at a few sizes before (or instead of) the scaling grid;
analysis.methods.hparam_search turns its rows (kind "hparam", one size_label per size) into lr*(N), and
`train.lr: {from_fit: PATH}` feeds that law back: each scaling trial's lr = lr*(N). Under
model.parametrization mup the best lr does not move with width, so `train.lr: {from_search:
RESULTS_DIR}` takes the search's best lr at the base width (its smallest size, d_model =
model.base_d_model) for every size, and the plan says so (lr_note).
examples/hparam-search.yaml comments every key. Section [defaults]:

  sizes             required: depths of the model dial ([2, 4]) or shapes ([{n_layer, d_model, n_head}])
  space             required: TrainConfig field -> one Tune primitive written as data:
                    {loguniform: [lo, hi]}, {uniform: [lo, hi]}, {randint: [lo, hi]} (hi included),
                    {choice: [...]}, {grid: [...]} (every value, crossed with the samples)
  search [random]   random (seeded Tune sampling) | grid (every choice/grid value once) |
                    optuna (TPE through Tune's OptunaSearch; pip install scaling-orchestrator[optuna])
  num_samples       configs drawn per size [8; 1 for grid]; a grid key multiplies them
  scheduler [fifo]  fifo | asha | {type: asha, grace_period_tokens, reduction_factor [3]}
  tokens_per_trial | tokens_per_param   the training tokens of every trial at a size (one is required)
  seed [0]          of the searcher: a re-run draws the same configs and skips the finished ones

Token counts are rounded to a multiple of every batch_tokens the search may pick, so that all
trials of a size evaluate at the same token counts, which is what ASHA compares them at.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.spec.sections.model import ModelSpec
from scaling_orchestrator.orchestrator.spec.validate import (
    SpecError,
    choice,
    fail,
    mapping,
    model_shape,
    number,
    sequence,
    whole_number,
)

KEYS = ("sizes", "space", "search", "num_samples", "scheduler", "tokens_per_trial",
        "tokens_per_param", "seed")
# Recipe fields a search may vary; total_tokens, eval cadence, device, dtype are the plan's.
SPACE_FIELDS = ("lr", "batch_tokens", "min_lr_ratio", "warmup_fraction", "schedule",
                "decay_fraction", "weight_decay", "beta1", "beta2", "grad_clip", "seed")
INT_FIELDS, STR_FIELDS = ("batch_tokens", "seed"), ("schedule",)
PRIMITIVES = ("loguniform", "uniform", "randint", "choice", "grid")
SEARCHES, SCHEDULERS = ("random", "grid", "optuna"), ("fifo", "asha")
# ASHA's rate: keep the best 1/3 at each rung (eta = 3, Li et al. 2018 Hyperband, Sec. 3;
# Li et al. 2020 ASHA uses 4): a 1e6-token trial with grace 1.1e5 has rungs 1.1e5, 3.3e5, 1e6.
DEFAULT_REDUCTION_FACTOR = 3.0


@dataclass(frozen=True)
class SearchDim:
    """One searched TrainConfig field: a Tune primitive and its arguments."""

    name: str
    primitive: str  # one of PRIMITIVES
    values: tuple  # (lo, hi) for loguniform/uniform/randint, the values for choice/grid

    def describe(self) -> str:
        args = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.values)
        return f"{self.name} {self.primitive}[{args}]"


@dataclass(frozen=True)
class HparamSize:
    label: str  # the trials' size_label, ModelSpec.label: "d4" (depth 4 of the dial) or "L2xD64"
    shape: ModelShape
    total_tokens: int
    eval_every_tokens: int


@dataclass(frozen=True)
class HparamSpec:
    sizes: tuple[HparamSize, ...]
    space: tuple[SearchDim, ...]
    search: str = "random"
    num_samples: int = 8
    scheduler: str = "fifo"
    grace_period_tokens: int = 0  # asha only
    reduction_factor: float = DEFAULT_REDUCTION_FACTOR
    seed: int = 0
    token_rule: str = ""  # "tokens_per_trial=1e+06" or "tokens_per_param=20", for the plan

    @property
    def trials_per_size(self) -> int:
        """Tune trials per size: grid keys are crossed with every sample (Tune's grid_search)."""
        grid = [len(d.values) for d in self.space if d.primitive == "grid" or self.search == "grid"]
        return self.num_samples * math.prod(grid)


def parse_hparams(raw, model: ModelSpec, recipe) -> HparamSpec:
    """`recipe` is the parsed spec.Recipe (sweep.py imports this module, never the reverse)."""
    mapping(raw, "hparams", KEYS)
    for key in ("sizes", "space"):
        if key not in raw:
            raise SpecError(f"hparams.{key}: missing; sizes and space are required")
    search = choice(raw.get("search", "random"), "hparams.search", SEARCHES)
    if search == "optuna" and importlib.util.find_spec("optuna") is None:
        fail("hparams.search", "optuna", "random or grid here: optuna is not installed "
             "(pip install 'scaling-orchestrator[optuna]')")
    space = _space(raw["space"], search, recipe, model.seq_len)
    default_samples = 1 if search == "grid" else 8
    samples = whole_number(raw.get("num_samples", default_samples), "hparams.num_samples", minimum=1)
    if search == "grid" and samples != 1:
        fail("hparams.num_samples", samples, "1 for search: grid (repeat it with seed: {grid: [0, 1]})")
    batches = {recipe.config.batch_tokens} | {v for d in space if d.name == "batch_tokens" for v in d.values}
    sizes = _sizes(raw, model, recipe, math.lcm(*batches), max(batches))
    scheduler, grace, factor = _scheduler(raw.get("scheduler", "fifo"), sizes)
    return HparamSpec(
        sizes=sizes,
        space=space,
        search=search,
        num_samples=samples,
        scheduler=scheduler,
        grace_period_tokens=grace,
        reduction_factor=factor,
        seed=whole_number(raw.get("seed", 0), "hparams.seed"),
        token_rule=_token_rule(raw),
    )


def _space(raw, search: str, recipe, seq_len: int) -> tuple[SearchDim, ...]:
    if not isinstance(raw, dict) or not raw:
        fail("hparams.space", raw, f"a non-empty mapping of {', '.join(SPACE_FIELDS)}")
    mapping(raw, "hparams.space", SPACE_FIELDS)
    dims = []
    for name, spec in raw.items():
        path = f"hparams.space.{name}"
        if not isinstance(spec, dict) or len(spec) != 1:
            fail(path, spec, f"one of {', '.join('{%s: [...]}' % p for p in PRIMITIVES)}")
        ((primitive, args),) = spec.items()
        choice(primitive, path, PRIMITIVES)
        dims.append(_dim(name, primitive, args, f"{path}.{primitive}", search, recipe, seq_len))
    return tuple(dims)


def _dim(name: str, primitive: str, args, path: str, search: str, recipe, seq_len: int) -> SearchDim:
    discrete = primitive in ("choice", "grid")
    if search == "grid" and not discrete:
        fail(path, args, "choice or grid values for search: grid (use random or optuna for ranges)")
    if search == "optuna" and primitive == "grid":
        fail(path, args, "loguniform, uniform, randint or choice: Optuna has no grid")
    if (name in STR_FIELDS or name == "batch_tokens") and not discrete:
        fail(path, args, f"choice or grid values: {name} takes no {primitive} range")
    if name not in INT_FIELDS and primitive == "randint":
        fail(path, args, f"loguniform, uniform, choice or grid: {name} is not a whole number")
    if name in INT_FIELDS and primitive in ("uniform", "loguniform"):
        fail(path, args, f"randint, choice or grid: {name} is a whole number")
    items = sequence(args, path, "values" if discrete else "[low, high]", allow_empty=False)
    if not discrete and len(items) != 2:
        fail(path, args, "[low, high]")
    values = []
    for i, v in enumerate(items):
        where = f"{path}[{i}]"
        value = (
            whole_number(v, where) if name in INT_FIELDS else v if name in STR_FIELDS else number(v, where)
        )
        if name == "batch_tokens" and (value <= 0 or value % seq_len):
            fail(where, value, f"a positive multiple of model.seq_len ({seq_len})")
        try:  # the recipe's own checks (lr > 0, beta < 1, schedule names ...)
            total = recipe.config.batch_tokens * (value if name == "batch_tokens" else 1)
            dataclasses.replace(recipe.config, total_tokens=total, **{name: value})
        except (ValueError, TypeError) as e:
            fail(where, value, f"a valid train.{name} ({e})")
        values.append(value)
    if discrete and len(set(values)) != len(values):
        fail(path, items, "without repeats")
    if not discrete and not values[0] < values[1]:
        fail(path, items, "[low, high] with low < high")
    return SearchDim(name, primitive, tuple(values))


def _sizes(raw, model: ModelSpec, recipe, multiple: int, max_batch: int) -> tuple[HparamSize, ...]:
    items = sequence(
        raw["sizes"],
        "hparams.sizes",
        "depths of the model dial or {n_layer, d_model, n_head}",
        allow_empty=False,
    )
    given = [k for k in ("tokens_per_trial", "tokens_per_param") if k in raw]
    if len(given) != 1:
        fail("hparams", {k: raw[k] for k in given}, "given exactly one of tokens_per_trial, tokens_per_param")
    sizes = []
    for i, item in enumerate(items):
        path = f"hparams.sizes[{i}]"
        if isinstance(item, dict):
            shape = model_shape(item, path, model.vocab_size, model.seq_len, **model.shape_fields)
        elif not model.axis:
            fail(path, item, "a shape {n_layer, d_model, n_head}: model gives shapes, not a size dial")
        else:
            shape = _dial_size(model, item, path)
        label = model.label(shape)
        if label in [s.label for s in sizes]:
            fail(path, item, f"different from the other sizes ({label} twice)")
        sizes.append(_size(label, shape, raw, given[0], recipe, multiple, max_batch))
    return tuple(sorted(sizes, key=lambda s: s.shape.param_counts()["total"]))


def _dial_size(model: ModelSpec, item, path: str) -> ModelShape:
    """A size of the model's dial: a depth, or a d_model on the width dial (a multiple of head_dim)."""
    value = whole_number(item, path, minimum=1)
    if model.axis == "width" and value % model.head_dim:
        fail(path, value, f"a d_model of the width dial: a multiple of model.head_dim ({model.head_dim})")
    if model.parametrization == "mup" and (model.at(value).d_model < model.base_d_model):
        fail(path, value, f"at least model.base_d_model ({model.base_d_model}) wide")
    return model.at(value)


def _size(label: str, shape: ModelShape, raw, rule: str, recipe, multiple: int, max_batch: int) -> HparamSize:
    """Whole multiples of `multiple` (the lcm of every batch_tokens the search may pick) for
    the trial length and the evaluation cadence: 1e6 tokens over batches {1024, 2048, 4096}
    -> 999,424 = 244 x 4096. The largest batch gives the fewest steps, so it meets min_steps."""
    path = f"hparams.{rule}"
    per = number(raw[rule], path, "a positive number", lambda x: x > 0)
    want = per if rule == "tokens_per_trial" else per * shape.param_counts()["total"]
    total = max(1, round(want / multiple)) * multiple
    short = recipe.too_few_steps(total // max_batch, max_batch)
    if short:
        fail(path, raw[rule], f"larger: size {label} ({total} tokens) gets {short}")
    return HparamSize(label, shape, total, recipe.eval_every_tokens(total, multiple))


def _scheduler(raw, sizes) -> tuple[str, int, float]:
    if isinstance(raw, str):
        raw = {"type": raw}
    mapping(raw, "hparams.scheduler", ("type", "grace_period_tokens", "reduction_factor"))
    kind = choice(raw.get("type", "fifo"), "hparams.scheduler.type", SCHEDULERS)
    if kind == "fifo":
        if len(raw) > 1:
            fail(
                "hparams.scheduler.type", "fifo", "asha when grace_period_tokens or reduction_factor is given"
            )
        return kind, 0, DEFAULT_REDUCTION_FACTOR
    factor = number(
        raw.get("reduction_factor", DEFAULT_REDUCTION_FACTOR),
        "hparams.scheduler.reduction_factor",
        "a number > 1",
        lambda x: x > 1,
    )
    shortest = min(s.total_tokens for s in sizes)
    # default: the first evaluation, so the weakest configs stop after one eighth of their tokens
    grace = whole_number(
        raw.get("grace_period_tokens", min(s.eval_every_tokens for s in sizes)),
        "hparams.scheduler.grace_period_tokens",
        minimum=1,
    )
    if grace >= shortest:
        fail(
            "hparams.scheduler.grace_period_tokens",
            grace,
            f"below the tokens of the shortest trial ({shortest}) or ASHA never stops one",
        )
    return kind, grace, factor


def _token_rule(raw) -> str:
    rule = "tokens_per_trial" if "tokens_per_trial" in raw else "tokens_per_param"
    return f"{rule}={number(raw[rule], rule):g}"


@dataclass(frozen=True)
class LrSource:
    """Where `train.lr: {from_fit: PATH[, params]}` or `{from_search: RESULTS_DIR}` takes the lr
    from, as the spec writes it; spec/references.py reads it (resolve, before planning)."""

    kind: str  # "from_fit" (an lr law in a `scaling fit --json` file) or "from_search" (mup)
    path: str
    params: str = "total"  # the law's N: total or non_embedding params


def split_lr_law(train, model: ModelSpec | None = None) -> tuple[LrSource | None, object]:
    """The train section -> (where its lr comes from, or None for a number; the section less
    that lr). Only the YAML is checked here; `model` (the parsed model section) is what
    train.lr: {from_search} is checked against."""
    if not isinstance(train, dict) or not isinstance(train.get("lr"), dict):
        return None, train
    rest = {k: v for k, v in train.items() if k != "lr"}
    raw = train["lr"]
    mapping(raw, "train.lr", ("from_fit", "params", "from_search"))
    if "from_search" in raw:
        if len(raw) > 1:
            fail("train.lr", raw, "{from_search: RESULTS_DIR} alone (its lr is not a law in params)")
        path = raw["from_search"]
        if not isinstance(path, str) or not path:
            fail("train.lr.from_search", path, "the results folder of a search (`scaling run` with hparams)")
        if model is None or model.parametrization != "mup":
            fail(
                "train.lr.from_search",
                path,
                "used with model.parametrization: mup (under standard the best lr "
                "moves with width: use train.lr: {from_fit} for lr*(N))",
            )
        return LrSource("from_search", path), rest
    path = raw.get("from_fit")
    if not isinstance(path, str) or not path:
        fail("train.lr.from_fit", path, "the path of a `scaling fit --json` file with an lr_law")
    params = choice(raw.get("params", "total"), "train.lr.params", ("total", "non_embedding"))
    return LrSource("from_fit", path, params), rest
