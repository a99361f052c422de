"""The spec's model section: the candidate sizes and the one name each size goes by.

  model   depth: {min, max}, aspect_ratio [32], head_dim [32] (the size dial, ModelShape.from_depth)
          or shapes: [{n_layer, d_model, n_head[, d_ff, tied_embeddings]}]; seq_len [128]

A size's label ("d4" on the dial, "L4xD128" for a listed shape) names it in the plan, in the
search's sizes and in every result row (size_label), so the analysis groups runs by it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.shape import ModelShape
from orchestrator.validate import SpecError, fail, mapping, model_shape, sequence, whole_number


@dataclass(frozen=True)
class ModelSpec:
    """The candidate sizes of a sweep, and the dial that made them (if one did)."""

    seq_len: int
    vocab_size: int
    shapes: tuple[ModelShape, ...] = ()  # the candidate sizes, ascending in total params
    dial: str = "explicit shapes"  # where they came from, for the plan's header
    aspect_ratio: int = 0  # of the depth dial; 0 for explicit shapes
    head_dim: int = 0

    def at_depth(self, depth: int) -> ModelShape:
        """Depth `depth` of the size dial (ModelShape.from_depth): aspect 16, head_dim 16, depth 4 -> 64 wide."""
        return ModelShape.from_depth(depth, vocab_size=self.vocab_size, seq_len=self.seq_len,
                                     aspect_ratio=self.aspect_ratio, head_dim=self.head_dim)

    def label(self, shape: ModelShape) -> str:
        """A size's one name, in the plan and in every result row (size_label): "d4" for depth 4
        of the dial, "L4xD128" (n_layer x d_model) for a shape the dial does not make."""
        if self.aspect_ratio and shape == self.at_depth(shape.n_layer):
            return f"d{shape.n_layer}"
        return f"L{shape.n_layer}xD{shape.d_model}"


def parse_model(raw, vocab_size: int) -> ModelSpec:
    """The spec's model section: the depth dial's candidates, or the listed shapes."""
    mapping(raw, "model", ("depth", "aspect_ratio", "head_dim", "seq_len", "shapes"))
    seq_len = whole_number(raw.get("seq_len", 128), "model.seq_len", minimum=1)
    if ("shapes" in raw) == ("depth" in raw):
        raise SpecError("model: give either depth: {min, max} (the size dial) or shapes: [...]")
    if "shapes" in raw:
        if {"aspect_ratio", "head_dim"} & raw.keys():
            raise SpecError("model.aspect_ratio: aspect_ratio and head_dim apply to the depth dial, not shapes")
        return _explicit_shapes(raw["shapes"], ModelSpec(seq_len, vocab_size))
    depth = mapping(raw["depth"], "model.depth", ("min", "max"))
    lo = whole_number(depth.get("min", 1), "model.depth.min", minimum=1)
    hi = whole_number(depth.get("max", lo), "model.depth.max", minimum=1)
    if lo > hi:
        fail("model.depth.min", lo, f"<= model.depth.max ({hi})")
    aspect = whole_number(raw.get("aspect_ratio", 32), "model.aspect_ratio", minimum=1)
    head_dim = whole_number(raw.get("head_dim", 32), "model.head_dim", minimum=1)
    dial = ModelSpec(seq_len, vocab_size, dial=f"depth {lo}..{hi}, aspect_ratio {aspect}, head_dim {head_dim}",
                     aspect_ratio=aspect, head_dim=head_dim)
    return dataclasses.replace(dial, shapes=tuple(dial.at_depth(d) for d in range(lo, hi + 1)))


def _explicit_shapes(raw, model: ModelSpec) -> ModelSpec:
    """The listed shapes, sorted by params; each has a label of its own, so rows group by size."""
    items = sequence(raw, "model.shapes", "{n_layer, d_model, n_head[, d_ff, tied_embeddings]}", allow_empty=False)
    shapes: list[ModelShape] = []
    for i, item in enumerate(items):
        path = f"model.shapes[{i}]"
        shape = model_shape(item, path, model.vocab_size, model.seq_len)
        label = model.label(shape)
        same = next((j for j, s in enumerate(shapes) if model.label(s) == label), None)
        if same is not None:
            fail(path, item, f"different from shapes[{same}]" if shape == shapes[same] else
                 f"a size of its own: shapes[{same}] has its n_layer and d_model ({label})")
        shapes.append(shape)
    return dataclasses.replace(model, shapes=tuple(sorted(shapes, key=lambda s: s.param_counts()["total"])))
