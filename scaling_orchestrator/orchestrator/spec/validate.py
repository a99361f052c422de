"""Checks for the sweep spec's values, shared by its sections (sweep.py, hparams.py, design.py ...).

Each check takes the raw value and its dotted path in the spec and returns the typed value, or
raises a `SpecError` of one line: where, what, what is allowed ("budgets_flops[1]: -5 must be
a positive number"). PyYAML reads `1e12` (no dot) as a string, so every number accepts such
strings. A rule that belongs to a dataclass (DataSpec.val_fraction) is checked by that
dataclass alone; `build` re-says its error at the spec's path.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re

from scaling_orchestrator.models.shape import ModelShape


class SpecError(ValueError):
    """A bad sweep spec; the message is one line: where, what, what is allowed."""


def fail(path: str, value, allowed: str):
    text = f"{value:g}" if isinstance(value, float) else repr(value)
    raise SpecError(f"{path}: {text if len(text) <= 60 else text[:57] + '...'} must be {allowed}")


def mapping(raw, path: str, allowed) -> dict:
    """raw, a mapping whose keys are all in `allowed`; an unknown key names the closest known one."""
    if not isinstance(raw, dict):
        fail(path, raw, f"a mapping of {', '.join(allowed)}")
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = str(key) if path == "spec" else f"{path}.{key}"
            raise SpecError(f"{where}: unknown key; {hint}allowed: {', '.join(allowed)}")
    return raw


def number(value, path: str, allowed: str = "a number", ok=lambda x: True) -> float:
    try:  # "1e12" strings too: PyYAML reads a number without a dot as a string
        out = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if not (math.isfinite(out) and ok(out)):
        fail(path, value, allowed)
    return out


def whole_number(value, path: str, *, minimum: int = 0) -> int:
    return int(number(value, path, f"a whole number >= {minimum}", lambda x: x >= minimum and x == int(x)))


def choice(value, path: str, choices) -> str:
    return value if value in choices else fail(path, value, f"one of {', '.join(choices)}")


def boolean(value, path: str) -> bool:
    return value if isinstance(value, bool) else fail(path, value, "true or false")


def sequence(value, path: str, what: str, *, allow_empty: bool = True) -> list:
    """A YAML list (of `what`, for the message)."""
    if not isinstance(value, list) or (not value and not allow_empty):
        fail(path, value, f"a {'' if allow_empty else 'non-empty '}list of {what}")
    return value


def dataclass_fields(raw, path: str, cls, skip=(), extra=None) -> dict:
    """A mapping of cls's fields (less skip, plus extra: name -> default), each checked against
    its default's type (no default: an int); a float or a mapping's values must be >= 0."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else
                         0 if f.default_factory is dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(cls) if f.name not in skip} | (extra or {})
    out = {}
    for key, value in mapping(raw, path, tuple(defaults)).items():
        default, where = defaults[key], f"{path}.{key}"
        if isinstance(default, bool):
            out[key] = boolean(value, where)
        elif isinstance(default, int):
            out[key] = whole_number(value, where)
        elif isinstance(default, float):
            out[key] = number(value, where, "a number >= 0", lambda x: x >= 0)
        elif isinstance(default, str):
            out[key] = value if isinstance(value, str) else fail(where, value, "a string")
        elif not isinstance(value, dict):
            fail(where, value, "a mapping")
        else:
            out[key] = {str(k): number(v, f"{where}.{k}", "a number >= 0", lambda x: x >= 0)
                        for k, v in value.items()}
    return out


def build(cls, kw: dict, path: str):
    """cls(**kw), its own check's error re-said at the spec's path: DataSpec's
    "DataSpec.val_fraction=0.7: must be in (0, 0.5)" -> "data.val_fraction: 0.7 must be in (0, 0.5)".
    A message in another form keeps its words after the path."""
    return checked(lambda: cls(**kw), cls.__name__, path)


def checked(make, name: str, path: str):
    """make(), a ValueError of the form "{name}.field=value: must be ..." re-said as build says it."""
    try:
        return make()
    except ValueError as e:
        said = re.fullmatch(rf"{name}\.(\w+)=(.*?): must be (.*)", str(e))
        if said is None:
            raise SpecError(f"{path}: {e}") from None
        raise SpecError(f"{path}.{said[1]}: {said[2]} must be {said[3]}") from None


def model_shape(item, path: str, vocab_size: int, seq_len: int, **fixed) -> ModelShape:
    """{n_layer, d_model, n_head[, d_ff, tied_embeddings]} -> a ModelShape of the spec's vocab and
    seq_len; `fixed` are the model section's own fields (parametrization, base_d_model, base_head_dim)."""
    # tied_embeddings defaults to None (the block's own default): typed here as the bool it is
    skip = ("vocab_size", "seq_len", "tied_embeddings", *ModelShape.ADDED_FIELDS)
    kw = dataclass_fields(item, path, ModelShape, skip=skip, extra={"tied_embeddings": True})
    for key in ("n_layer", "d_model", "n_head"):
        if not kw.get(key):
            fail(f"{path}.{key}", kw.get(key), "a whole number >= 1 (n_layer, d_model, n_head are required)")
    # ModelShape refuses it too, naming d_model; the spec names the head count
    if kw["d_model"] % kw["n_head"]:
        fail(f"{path}.n_head", kw["n_head"], f"a divisor of d_model ({kw['d_model']})")
    return checked(
        lambda: ModelShape(**kw, vocab_size=vocab_size, seq_len=seq_len, **fixed), "ModelShape", path
    )
