"""The spec's model section: the candidate sizes along the depth and width axes, the context,
the parametrization, and the one name each size goes by.

  model   a size dial, one of
            depth: {min, max}, aspect_ratio [32]   both grow: d_model = aspect_ratio * depth
                                                   (ModelShape.from_depth; the aspect ratio is fixed)
            depth: {min, max}, d_model: W          depth grows at a fixed width (the aspect ratio falls)
            width: {min, max}, n_layer: L          width grows at a fixed depth: every multiple of
                                                   head_dim from min to max (the aspect ratio rises)
          with head_dim [32] (n_head = d_model / head_dim);
          or shapes: [{n_layer, d_model, n_head[, d_ff, tied_embeddings]}] (any aspect ratio each)
          seq_len [128]            the context; a shape study plans several (designs/shape.py)
          block [gpt2] | llama     the block (models/gpt.py, models/llama.py); llama alone takes
            n_kv_heads [n_head]      grouped-query attention: must divide every size's n_head
            qk_norm [false]          RMSNorm on queries and keys
            ffn_multiple_of [64]     d_ff = 8/3 d_model rounded up to this
            rope_theta [10000]       the rotary base
          parametrization [standard] | mup   (Yang et al. 2022; models/mup.py)
          base_d_model             mup: the width its hyperparameters are tuned at [the narrowest size's]
          base_head_dim            mup: the head size at that width [each size's head_dim: width grows by
          heads]

A size's label ("d4" on the depth-and-width dial, "L4xD128" otherwise, "...xT512" at a context
other than seq_len) names it in the plan, in the search's sizes and in every result row
(size_label), so the analysis groups runs by it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaling_orchestrator.models.shape import BLOCKS, LLAMA_FIELDS, PARAMETRIZATIONS, ModelShape
from scaling_orchestrator.orchestrator.spec.validate import (
    SpecError,
    boolean,
    checked,
    choice,
    fail,
    mapping,
    model_shape,
    number,
    sequence,
    whole_number,
)

KEYS = (
    "depth",
    "width",
    "aspect_ratio",
    "d_model",
    "n_layer",
    "head_dim",
    "seq_len",
    "shapes",
    "parametrization",
    "base_d_model",
    "base_head_dim",
    "block",
    *LLAMA_FIELDS,
)
MUP_KEYS = ("base_d_model", "base_head_dim")


@dataclass(frozen=True)
class ModelSpec:
    """The candidate sizes of a sweep, and the dial that made them (if one did)."""

    seq_len: int
    vocab_size: int
    shapes: tuple[ModelShape, ...] = ()  # the candidate sizes, ascending in total params
    dial: str = "explicit shapes"  # where they came from, for the plan's header
    aspect_ratio: int = 0  # of the depth-and-width dial; 0 otherwise
    head_dim: int = 0  # of any dial; 0 for explicit shapes
    axis: str = ""  # what the dial grows: "depth+width" | "depth" | "width"; "" for explicit shapes
    fixed: int = 0  # the other axis of a one-axis dial: d_model ("depth") or n_layer ("width")
    parametrization: str = "standard"
    base_d_model: int = 0  # mup only
    base_head_dim: int = 0  # mup only; 0: each size's own head_dim
    block_fields: tuple[tuple[str, object], ...] = ()  # block and its options where not the default

    @property
    def shape_fields(self) -> dict:
        """The block and parametrization fields every size of this section carries."""
        if self.parametrization == "standard":
            return dict(self.block_fields)
        return {
            **dict(self.block_fields),
            "parametrization": self.parametrization,
            "base_d_model": self.base_d_model,
            "base_head_dim": self.base_head_dim,
        }

    def at_depth(self, depth: int) -> ModelShape:
        """Depth `depth` of the depth-and-width dial (ModelShape.from_depth): aspect 16,
        head_dim 16, depth 4 -> 64 wide; of a depth dial at a fixed width: depth x that width."""
        if self.axis == "depth":
            return self.make(depth, self.fixed)
        return ModelShape.from_depth(
            depth,
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
            aspect_ratio=self.aspect_ratio,
            head_dim=self.head_dim,
            **self.shape_fields,
        )

    def at(self, value: int) -> ModelShape:
        """The dial at `value`: a depth (depth dials) or a d_model (the width dial)."""
        return self.make(self.fixed, value) if self.axis == "width" else self.at_depth(value)

    def make(self, n_layer: int, d_model: int, seq_len: int = 0) -> ModelShape:
        """n_layer x d_model in heads of head_dim, with this section's vocab, context and parametrization."""
        return ModelShape(
            n_layer=n_layer,
            d_model=d_model,
            n_head=d_model // self.head_dim,
            vocab_size=self.vocab_size,
            seq_len=seq_len or self.seq_len,
            **self.shape_fields,
        )

    def label(self, shape: ModelShape) -> str:
        """A size's one name, in the plan and in every result row (size_label): "d4" for depth 4
        of the depth-and-width dial, "L4xD128" (n_layer x d_model) for any other size, with
        "xT512" appended at a context other than the section's seq_len."""
        context = "" if shape.seq_len == self.seq_len else f"xT{shape.seq_len}"
        if self.axis == "depth+width" and shape.with_context(self.seq_len) == self.at_depth(shape.n_layer):
            return f"d{shape.n_layer}{context}"
        return f"L{shape.n_layer}xD{shape.d_model}{context}"


def parse_model(raw, vocab_size: int) -> ModelSpec:
    """The spec's model section: a dial's candidates, or the listed shapes, then the parametrization."""
    mapping(raw, "model", KEYS)
    seq_len = whole_number(raw.get("seq_len", 128), "model.seq_len", minimum=1)
    given = [k for k in ("depth", "width", "shapes") if k in raw]
    if len(given) != 1:
        raise SpecError(
            "model: give either depth: {min, max} or width: {min, max} (a size dial), or shapes: [...]"
        )
    spec = ModelSpec(seq_len, vocab_size, block_fields=_block(raw))
    if "shapes" in raw:
        dial_keys = sorted({"aspect_ratio", "head_dim", "d_model", "n_layer"} & raw.keys())
        if dial_keys:
            raise SpecError(f"model.{dial_keys[0]}: applies to a size dial (depth or width), not to shapes")
        spec = _explicit_shapes(raw["shapes"], spec)
    else:
        spec = _dial(raw, spec)
    return _parametrize(raw, spec)


def _range(raw, path: str) -> tuple[int, int]:
    rng = mapping(raw, path, ("min", "max"))
    lo = whole_number(rng.get("min", 1), f"{path}.min", minimum=1)
    hi = whole_number(rng.get("max", lo), f"{path}.max", minimum=1)
    if lo > hi:
        fail(f"{path}.min", lo, f"<= {path}.max ({hi})")
    return lo, hi


def _multiple(value, path: str, head_dim: int) -> int:
    """A width: a whole multiple of the head size, so that every head is whole."""
    width = whole_number(value, path, minimum=1)
    if width % head_dim:
        fail(
            path,
            width,
            f"a multiple of model.head_dim ({head_dim}): n_head = d_model / head_dim must be whole",
        )
    return width


def _dial(raw, spec: ModelSpec) -> ModelSpec:
    """The depth-and-width, depth-only or width-only dial and its candidates."""
    head_dim = whole_number(raw.get("head_dim", 32), "model.head_dim", minimum=1)
    spec = dataclasses.replace(spec, head_dim=head_dim)
    dial, values = _width_dial(raw, spec) if "width" in raw else _depth_dial(raw, spec)
    shapes = tuple(checked(lambda v=v: dial.at(v), "ModelShape", "model") for v in values)
    return dataclasses.replace(dial, shapes=shapes)


def _width_dial(raw, spec: ModelSpec) -> tuple[ModelSpec, range]:
    """d_model from min to max in steps of head_dim, n_layer fixed."""
    for key in ("aspect_ratio", "d_model"):
        if key in raw:
            raise SpecError(f"model.{key}: applies to the depth dial; the width dial takes n_layer")
    if "n_layer" not in raw:
        raise SpecError("model.n_layer: missing; the width dial grows d_model at a fixed n_layer")
    n_layer = whole_number(raw["n_layer"], "model.n_layer", minimum=1)
    lo, hi = _range(raw["width"], "model.width")
    lo, hi = _multiple(lo, "model.width.min", spec.head_dim), _multiple(hi, "model.width.max", spec.head_dim)
    dial = dataclasses.replace(
        spec,
        dial=f"width {lo}..{hi} (every {spec.head_dim}) at {n_layer} layers, head_dim {spec.head_dim}",
        axis="width",
        fixed=n_layer,
    )
    return dial, range(lo, hi + 1, spec.head_dim)


def _depth_dial(raw, spec: ModelSpec) -> tuple[ModelSpec, range]:
    """n_layer from min to max; d_model = aspect_ratio x n_layer, or fixed."""
    if "n_layer" in raw:
        raise SpecError(
            "model.n_layer: applies to the width dial; the depth dial takes aspect_ratio or d_model"
        )
    lo, hi = _range(raw["depth"], "model.depth")
    if "d_model" not in raw:
        aspect = whole_number(raw.get("aspect_ratio", 32), "model.aspect_ratio", minimum=1)
        return dataclasses.replace(
            spec,
            dial=f"depth {lo}..{hi}, aspect_ratio {aspect}, head_dim {spec.head_dim}",
            aspect_ratio=aspect,
            axis="depth+width",
        ), range(lo, hi + 1)
    if "aspect_ratio" in raw:
        raise SpecError(
            "model.aspect_ratio: give aspect_ratio (width grows with depth) or d_model (width "
            "fixed), not both"
        )
    width = _multiple(raw["d_model"], "model.d_model", spec.head_dim)
    return dataclasses.replace(
        spec, dial=f"depth {lo}..{hi} at d_model {width}, head_dim {spec.head_dim}", axis="depth", fixed=width
    ), range(lo, hi + 1)


def _explicit_shapes(raw, model: ModelSpec) -> ModelSpec:
    """The listed shapes, sorted by params; each has a label of its own, so rows group by size."""
    items = sequence(
        raw, "model.shapes", "{n_layer, d_model, n_head[, d_ff, tied_embeddings]}", allow_empty=False
    )
    shapes: list[ModelShape] = []
    for i, item in enumerate(items):
        path = f"model.shapes[{i}]"
        shape = model_shape(item, path, model.vocab_size, model.seq_len, **dict(model.block_fields))
        label = model.label(shape)
        same = next((j for j, s in enumerate(shapes) if model.label(s) == label), None)
        if same is not None:
            fail(
                path,
                item,
                f"different from shapes[{same}]"
                if shape == shapes[same]
                else f"a size of its own: shapes[{same}] has its n_layer and d_model ({label})",
            )
        shapes.append(shape)
    return dataclasses.replace(model, shapes=tuple(sorted(shapes, key=lambda s: s.param_counts()["total"])))


def _block(raw) -> tuple[tuple[str, object], ...]:
    """block and llama's options, as the (field, value) pairs that differ from ModelShape's defaults."""
    block = choice(raw.get("block", "gpt2"), "model.block", BLOCKS)
    if block == "gpt2":
        extra = [k for k in LLAMA_FIELDS if k in raw]
        if extra:
            fail(f"model.{extra[0]}", raw[extra[0]], "absent unless model.block is llama")
        return ()
    fields = {
        "block": block,
        "n_kv_heads": whole_number(raw.get("n_kv_heads", 0), "model.n_kv_heads", minimum=0),
        "qk_norm": boolean(raw.get("qk_norm", False), "model.qk_norm"),
        "ffn_multiple_of": whole_number(raw.get("ffn_multiple_of", 64), "model.ffn_multiple_of", minimum=1),
        "rope_theta": number(raw.get("rope_theta", 1e4), "model.rope_theta", "a number > 1", lambda x: x > 1),
    }
    return tuple((k, v) for k, v in fields.items() if v != LLAMA_FIELDS.get(k))


def _parametrize(raw, spec: ModelSpec) -> ModelSpec:
    """parametrization and its base: checked against every candidate, then applied to each."""
    kind = choice(raw.get("parametrization", "standard"), "model.parametrization", PARAMETRIZATIONS)
    if kind == "standard":
        extra = [k for k in MUP_KEYS if k in raw]
        if extra:
            fail(f"model.{extra[0]}", raw[extra[0]], "absent unless model.parametrization is mup")
        return spec
    narrowest = min(spec.shapes, key=lambda s: s.d_model)
    base = whole_number(raw.get("base_d_model", narrowest.d_model), "model.base_d_model", minimum=1)
    if base > narrowest.d_model:
        fail(
            "model.base_d_model",
            base,
            f"at most the narrowest size's d_model ({spec.label(narrowest)}: "
            f"{narrowest.d_model}); mup scales up from its base width",
        )
    head = whole_number(raw.get("base_head_dim", 0), "model.base_head_dim", minimum=0)
    smallest_head = min(spec.shapes, key=lambda s: s.head_dim)
    if head > smallest_head.head_dim:
        fail(
            "model.base_head_dim",
            head,
            f"at most every size's head_dim ({spec.label(smallest_head)} has {smallest_head.head_dim})",
        )
    spec = dataclasses.replace(
        spec,
        parametrization=kind,
        base_d_model=base,
        base_head_dim=head,
        dial=f"{spec.dial}; mup on base width {base}",
    )
    shapes = tuple(
        checked(lambda s=s: dataclasses.replace(s, **spec.shape_fields), "ModelShape", "model")
        for s in spec.shapes
    )
    return dataclasses.replace(spec, shapes=shapes)
