"""What `fit` reads (Columns) and how it fits (FitOptions): two frozen dataclasses, checked
when built, so a bad value is one line naming the field and the value before any work starts.

    fit("runs.csv", Columns(params="n", tokens="d", loss="val"), FitOptions(n_bootstrap=200))
    fit(df, columns={"loss": "val"}, options={"target_flops": [1e21], "law": "auto"})

A plain dict is read into the dataclass (an unknown key is refused, naming the fields there are).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from scaling_orchestrator.analysis.data.load import FLOPS_COLUMNS, PARAM_COLUMNS
from scaling_orchestrator.analysis.judge.forecast import DEFAULT_PARAMS_THRESHOLD
from scaling_orchestrator.analysis.judge.recommend import check_targets
from scaling_orchestrator.analysis.methods.parabola import MIN_VALUES

ON_CORRUPT = ("raise", "skip")


@dataclass(frozen=True)
class Columns:
    """The table's column names (defaults: the orchestrator's row schema). param_convention
    "total" | "non_embedding" and flops_convention "exact" | "6n" pick the schema's column when
    params / flops are left at their defaults (non_embedding reads non_embedding_params).
    unique_tokens: the column of unique tokens U, for a law that needs it (data_constrained).
    A table with tokens and flops but no params column gets N = C / (6 D)."""

    params: str = "params"
    tokens: str = "tokens"
    flops: str = "flops"
    loss: str = "val_loss"            # nats/token
    run: str = "trial_id"             # one id per training run (its curve's rows share it)
    budget: str = "budget_flops"      # the IsoFLOP budget; snapped from flops when absent
    unique_tokens: str | None = None
    param_convention: str = "total"
    flops_convention: str = "exact"

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, str) and value) and not (f.name == "unique_tokens" and value is None):
                raise ValueError(f"columns.{f.name}={value!r}: a column name (a non-empty string)")
        _one_of("columns.param_convention", self.param_convention, tuple(PARAM_COLUMNS))
        _one_of("columns.flops_convention", self.flops_convention, tuple(FLOPS_COLUMNS))


@dataclass(frozen=True)
class FitOptions:
    """target_flops: budgets to recommend (N*, D*, L*) for (empty: 3x, 10x and 100x the
    largest budget). n_bootstrap: run resamples for the intervals (0: none). law: a form of
    scaling_orchestrator.analysis.laws.registry.forms(), or "auto" to choose by extrapolation
    (analysis/laws/choice.py). window: points per IsoFLOP / hyperparameter parabola.
    params_threshold: the back-test's largest N* miss that passes, relative (0.25). sweep: the
    sweep to fit when the source holds several (refused otherwise). on_corrupt: "raise" |
    "skip" an unreadable Parquet file of a results folder (a skipped one is a SkippedFileWarning)."""

    target_flops: tuple[float, ...] = ()
    n_bootstrap: int = 1000
    law: str = "chinchilla"
    seed: int = 0
    window: int = 5
    params_threshold: float = DEFAULT_PARAMS_THRESHOLD
    sweep: str | None = None
    on_corrupt: str = "raise"
    # the curve method's law: "" = multi_power where the table holds trunk rows (a trunks or
    # branches study), else not run; "none": never; lr_annealing | multi_power | auto: always
    curve_law: str = ""

    def __post_init__(self):
        object.__setattr__(self, "target_flops", check_targets(_sequence("target_flops", self.target_flops)))
        self._whole("n_bootstrap", 0, "0 or more resamples")
        self._whole("seed", None, "a whole number")
        self._whole("window", MIN_VALUES, f"at least {MIN_VALUES}")
        if not isinstance(self.law, str):
            raise ValueError(f"law={self.law!r}: a form name or 'auto'")
        threshold = self.params_threshold
        if not _real(threshold) or not 0 < threshold < math.inf:
            raise ValueError(f"params_threshold={threshold!r}: must be a fraction > 0 (0.25 = a 25% N* miss)")
        object.__setattr__(self, "params_threshold", float(threshold))
        if self.sweep is not None and not isinstance(self.sweep, str):
            raise ValueError(f"sweep={self.sweep!r}: a sweep name (a string) or None")
        _one_of("on_corrupt", self.on_corrupt, ON_CORRUPT)
        _one_of("curve_law", self.curve_law, ("", "none", "lr_annealing", "multi_power", "auto"))

    def _whole(self, name: str, minimum: int | None, allowed: str) -> None:
        value = getattr(self, name)
        if not _integral(value) or (minimum is not None and value < minimum):
            raise ValueError(f"{name}={value!r}: allowed {allowed}")
        object.__setattr__(self, name, int(value))


def as_columns(columns) -> Columns:
    """Columns as given, a dict of its fields, or None for the defaults."""
    return _as(Columns, columns, "columns")


def as_options(options) -> FitOptions:
    """FitOptions as given, a dict of its fields, or None for the defaults."""
    return _as(FitOptions, options, "options")


def _as(cls, value, what: str):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{what}: a {type(value).__name__}; allowed: {cls.__name__}, a dict of its "
                        "fields, or None")
    names = [f.name for f in fields(cls)]
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{what}: unknown field {unknown[0]!r}; fields: {', '.join(names)}")
    return cls(**value)


def _one_of(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; allowed: {', '.join(map(repr, allowed))}")


def _integral(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _sequence(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name}={value!r}: a sequence of FLOP counts")
    return tuple(value)
