"""numpy's floating-point warnings kept inside a fit; fit values to strict-JSON plain and back.

A law that overflows (alpha fitted at 54, A = 4e258) is caught by what it produced: non-finite
constants, a degenerate exponent, resamples dropped; each becomes a sentence in
FitResult.warnings, so numpy's RuntimeWarnings would only repeat it without saying where.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

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
    if isinstance(x, (list, tuple, np.ndarray)):
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
