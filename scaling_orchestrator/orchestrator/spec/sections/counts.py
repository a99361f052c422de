"""`model.counts: "package.module:function"`: the planner counts a model of the user's own.

The planner turns budgets into sizes and tokens with each shape's parameter and FLOP counts.
Those of the declared `model.block` are exact formulas (models/shape.py); a trainer of the
user's own (backend: command | python) may train another architecture, whose counts its author
knows: `function(shape: dict) -> {"params": int, "flops_per_token": float}` (optionally
"non_embedding_params"), the shape dict being ModelShape's fields. It is called once per
candidate size at plan time, and every trial, row and fit then uses its numbers: a
CountedShape is the shape with them attached (they are part of the trial's identity).
non_embedding_params defaults to params less the token table (vocab_size x d_model).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import ClassVar

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.spec.sections.model import ModelSpec, parse_model
from scaling_orchestrator.orchestrator.spec.user_code import load_function
from scaling_orchestrator.orchestrator.spec.validate import SpecError, fail

FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # "package.module:function"


@dataclasses.dataclass(frozen=True)
class CountedShape(ModelShape):
    """A ModelShape whose counts come from model.counts, not from the block's formulas."""

    counted_params: int = 0
    counted_non_embedding: int = 0
    counted_flops_per_token: float = 0.0
    ADDED_FIELDS: ClassVar[tuple[str, ...]] = ModelShape.ADDED_FIELDS

    def param_counts(self) -> dict[str, int]:
        return {"total": self.counted_params, "embedding": self.counted_params - self.counted_non_embedding,
                "non_embedding": self.counted_non_embedding}

    def flops_per_token(self) -> float:
        return self.counted_flops_per_token


def parse_model_section(raw, vocab_size: int, source: str) -> ModelSpec:
    """The model section (sections/model.py); its `counts` replace each size's block formulas."""
    counts = raw.get("counts") if isinstance(raw, dict) else None
    if counts is None:
        return parse_model(raw, vocab_size)
    model = parse_model({k: v for k, v in raw.items() if k != "counts"}, vocab_size)
    if not isinstance(counts, str) or not FUNCTION.fullmatch(counts):
        fail("model.counts", counts, '"package.module:function"')
    folder = os.path.dirname(os.path.abspath(source)) if source != "<dict>" else os.getcwd()
    shapes = sorted(counted_shapes(model.shapes, counts, folder), key=lambda s: s.param_counts()["total"])
    return dataclasses.replace(model, shapes=tuple(shapes))


def shape_from_dict(fields: dict) -> ModelShape:
    """A shape of a trial dict: counted when it carries counts."""
    return (CountedShape if "counted_params" in fields else ModelShape)(**fields)


def counted_shapes(shapes, name: str, search_dir: str) -> tuple[CountedShape, ...]:
    """`shapes` with the counts of the function `name` names, checked (a SpecError naming it)."""
    try:
        fn = load_function(name, search_dir)
    except ValueError as e:
        raise SpecError(f"model.counts: {e}") from None
    return tuple(_counted(shape, fn(dataclasses.asdict(shape)), name) for shape in shapes)


def _counted(shape: ModelShape, got, name: str) -> CountedShape:
    where = f"model.counts: {name}({shape.n_layer}L x {shape.d_model}d)"
    if not isinstance(got, dict) or "params" not in got or "flops_per_token" not in got:
        fail(where, got, 'a dict with "params" and "flops_per_token"')
    params, per_token = got["params"], got["flops_per_token"]
    if isinstance(params, bool) or not isinstance(params, int) or params <= 0:
        fail(f"{where}['params']", params, "a positive integer")
    if not isinstance(per_token, (int, float)) or not math.isfinite(per_token) or per_token <= 0:
        fail(f"{where}['flops_per_token']", per_token, "a positive number")
    non_embedding = got.get("non_embedding_params", max(params - shape.vocab_size * shape.d_model, 1))
    fields = {f.name: getattr(shape, f.name) for f in dataclasses.fields(shape)}
    return CountedShape(**fields, counted_params=params, counted_non_embedding=int(non_embedding),
                        counted_flops_per_token=float(per_token))
