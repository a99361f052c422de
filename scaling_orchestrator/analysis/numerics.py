"""numpy's floating-point warnings kept inside a fit; fit values to strict-JSON plain and back;
the one JSON writer every command's output goes through.

A law that overflows (alpha fitted at 54, A = 4e258) is caught by what it produced: non-finite
constants, a degenerate exponent, resamples dropped; each becomes a sentence in
FitResult.warnings, so numpy's RuntimeWarnings would only repeat it without saying where.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def quiet_numerics():
    """numpy's overflow / invalid-value warnings off while the fits (or their plots) run."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def to_plain(x):
    """numpy -> Python, non-finite floats -> None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return to_plain(x.tolist())
    if isinstance(x, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def number(x) -> float:
    """A JSON number back as a float: null (what to_plain wrote for NaN or inf) reads as NaN."""
    return float("nan") if x is None else float(x)


def json_text(value, indent: int | None = 2, **dumps) -> str:
    """value as strict JSON: to_plain first (NaN and inf -> null, numpy -> Python), then
    json.dumps with allow_nan=False; an object JSON has no type for (a Path, a date) is
    written as its str(), so a long command's result is never lost to its writer."""
    return json.dumps(to_plain(value), indent=indent, allow_nan=False, default=str, **dumps)


def write_json(path, value, indent: int | None = 2, **dumps) -> Path:
    """json_text(value) into path (its folder made), whole or not at all: the text is
    written to a temporary file beside it and renamed over it."""
    path = Path(path)
    text = json_text(value, indent=indent, **dumps) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
