"""Hyperparameter-law result objects and their JSON round trip: SizeOptimum (one size's
parabola vertex), HparamLaw (value* = coefficient * x^exponent), HparamFit (lr*(N) and
B*(C)), and load_lr_law, which reads the lr law back from a `scaling fit --json` file for the
planner's `lr: {from_fit: PATH}` through the same reader as FitResult.load. The fitting itself
is methods/hparam_search.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scaling_orchestrator.analysis.data.saved import read_fit_json
from scaling_orchestrator.analysis.errors import ABSENT, NotFittable
from scaling_orchestrator.analysis.numerics import number

# law name -> (value column, abscissa, JSON key of the fitted abscissa range)
LAWS = {"lr": ("lr", "params", "n_range"), "batch_tokens": ("batch_tokens", "flops", "flops_range")}


@dataclass(frozen=True)
class SizeOptimum:
    """The parabola vertex of one size's profile along one hyperparameter."""

    label: str
    params: float
    flops: float
    n_trials: int
    n_diverged: int
    fittable: bool
    reason: str = ""
    value_opt: float = float("nan")    # lr or batch_tokens at the vertex
    ci95: tuple = ()                   # bootstrap 2.5/97.5 percentiles of value_opt
    loss_opt: float = float("nan")
    edge: bool = False
    window: int = 0
    curvature: float = float("nan")    # d2 loss / d(log10 value)^2 at the vertex
    parabola: tuple = ()               # (c2, c1, c0, log10 lo, log10 hi) for plots
    observed: tuple = ()               # (value, profile loss) per distinct value tried

    def to_dict(self, name: str) -> dict:
        out = {"label": self.label, "params": self.params, "flops": self.flops,
               f"{name}_opt": self.value_opt, f"{name}_ci95": list(self.ci95) or None,
               "loss_opt": self.loss_opt, "edge": self.edge, "n_trials": self.n_trials,
               "n_diverged": self.n_diverged, "fittable": self.fittable, "window": self.window,
               "curvature": self.curvature,
               "observed": {name: [v for v, _ in self.observed],
                            "loss": [loss for _, loss in self.observed]}}
        if self.reason:
            out["reason"] = self.reason
        if self.parabola:
            out["parabola"] = dict(zip(("c2", "c1", "c0", "log10_x_lo", "log10_x_hi"),
                                       map(float, self.parabola)))
        return out

    @classmethod
    def from_dict(cls, d: dict, name: str) -> SizeOptimum:
        observed = d.get("observed") or {name: [], "loss": []}
        return cls(d["label"], number(d["params"]), number(d["flops"]), int(d["n_trials"]),
                   int(d["n_diverged"]), bool(d["fittable"]), d.get("reason", ""),
                   number(d.get(f"{name}_opt")), tuple(d.get(f"{name}_ci95") or ()),
                   number(d.get("loss_opt")), bool(d.get("edge", False)), int(d.get("window", 0)),
                   number(d.get("curvature")), tuple(number(v) for v in (d.get("parabola") or {}).values()),
                   tuple(zip(observed[name], observed["loss"])))


@dataclass(frozen=True)
class HparamLaw:
    """value*(x) = coefficient * x^exponent: lr*(params) or batch_tokens*(flops)."""

    name: str                  # "lr" | "batch_tokens"
    fittable: bool
    reason: str = ""
    coefficient: float = float("nan")
    exponent: float = float("nan")
    ci95: dict = field(default_factory=dict)    # {"coefficient": [lo, hi], "exponent": [lo, hi]}
    optima: tuple = ()
    samples: np.ndarray | None = None           # bootstrap rows (exponent, coefficient)
    excluded: dict = field(default_factory=dict)
    # As fit.json recorded them, for a law read back (it has neither resamples nor, in a
    # hand-written file, sizes): the fitted range of x and the plot band.
    recorded_range: tuple = ()
    recorded_band: tuple = ()

    @property
    def against(self) -> str:
        return LAWS[self.name][1]

    @property
    def used(self) -> tuple:
        return tuple(o for o in self.optima if o.fittable and not o.edge)

    @property
    def x_range(self) -> tuple[float, float]:
        if self.recorded_range:
            return self.recorded_range
        xs = [getattr(o, self.against) for o in self.used]
        return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))

    def predict(self, x) -> np.ndarray:
        if not self.fittable:
            raise NotFittable(f"{self.name} law: {self.reason}")
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent

    def band(self, n: int = 12) -> list[dict]:
        """The law and its bootstrap 95% band on a log grid over the fitted range, for plots."""
        lo, hi = self.x_range
        rows = []
        for x in np.logspace(math.log10(lo), math.log10(hi), n):
            ci = None
            if self.samples is not None and len(self.samples) >= 10:
                ci = list(np.percentile(self.samples[:, 1] * x ** self.samples[:, 0], [2.5, 97.5]))
            rows.append({self.against: float(x), self.name: float(self.predict(x)), "ci95": ci})
        return rows

    def to_dict(self) -> dict:
        sizes = [o.to_dict(self.name) for o in self.optima]
        if not self.fittable:   # exactly {"fittable", "reason"} when there was nothing to fit
            extra = {"excluded": dict(self.excluded)} if self.excluded else {}
            return {"fittable": False, "reason": self.reason, **extra,
                    **({"sizes": sizes} if sizes else {})}
        base = {"fittable": True, "excluded": dict(self.excluded)}
        used = {o.label for o in self.used}
        for s in sizes:
            s["used_in_law"] = s["label"] in used
        return {**base, "coefficient": self.coefficient, "exponent": self.exponent,
                "ci95": {"coefficient": self.ci95.get("coefficient"),
                         "exponent": self.ci95.get("exponent")},
                "against": self.against, "n_sizes": len(used), "sizes": sizes,
                LAWS[self.name][2]: list(self.x_range),
                "band": [dict(r) for r in self.recorded_band] or self.band()}

    @classmethod
    def from_dict(cls, d: dict | None, name: str) -> HparamLaw:
        """The law of a fit.json section (`{name}_law`); one that was not fitted keeps its reason."""
        if d is None:
            return cls(name, False, ABSENT)
        sizes = tuple(SizeOptimum.from_dict(s, name) for s in d.get("sizes") or ())
        if not d.get("fittable"):
            return cls(name, False, d.get("reason", ""), optima=sizes, excluded=dict(d.get("excluded") or {}))
        key, (_, against, range_key) = f"{name}_law", LAWS[name]
        for constant in ("coefficient", "exponent"):
            v = d.get(constant)
            if not _finite(v) or (constant == "coefficient" and v <= 0):
                raise ValueError(f"{key}.{constant} = {v!r}; allowed: a finite number"
                                 + (" > 0" if constant == "coefficient" else ""))
        fitted = d.get(range_key)
        if not (isinstance(fitted, list) and len(fitted) == 2 and all(_finite(v) and v > 0 for v in fitted)):
            raise ValueError(f"{key}.{range_key} = {fitted!r}; allowed: [smallest, largest] {against} > 0")
        ci = d.get("ci95") or {}
        return cls(name, True, "", float(d["coefficient"]), float(d["exponent"]),
                   {k: ci[k] for k in ("coefficient", "exponent") if ci.get(k) is not None}, sizes,
                   excluded=dict(d.get("excluded") or {}), recorded_range=tuple(map(float, fitted)),
                   recorded_band=tuple(d.get("band") or ()))


@dataclass(frozen=True)
class HparamFit:
    """lr*(N) and B*(C); a law that cannot be fitted says why and predicts nothing."""

    lr: HparamLaw
    batch: HparamLaw
    n_trials: int = 0

    def lr_at(self, params) -> np.ndarray:
        return self.lr.predict(params)

    def batch_tokens_at(self, flops) -> np.ndarray:
        return self.batch.predict(flops)

    def to_dict(self) -> dict:
        return {"lr_law": self.lr.to_dict(), "batch_law": self.batch.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, n_trials: int = 0) -> HparamFit:
        return cls(HparamLaw.from_dict(d.get("lr_law"), "lr"),
                   HparamLaw.from_dict(d.get("batch_law"), "batch_tokens"), n_trials)


@dataclass(frozen=True)
class LrLaw:
    """lr*(N) = coefficient * N^exponent read back from a `scaling fit --json` file."""

    coefficient: float
    exponent: float
    n_range: tuple[float, float]    # the sizes the law was fitted on; beyond them it extrapolates
    source: str = ""

    def __call__(self, params) -> float | np.ndarray:
        lr = self.coefficient * np.asarray(params, dtype=float) ** self.exponent
        return float(lr) if lr.ndim == 0 else lr


def load_lr_law(path) -> LrLaw:
    """The lr law of a fit JSON (its "lr_law" section, or a bare lr_law dict) as lr(N): the
    file read as FitResult.load reads it, the section by HparamLaw.from_dict as
    FitResult.from_dict reads it."""
    try:
        data = read_fit_json(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"lr from_fit: {err}") from None
    except ValueError as err:
        raise ValueError(f"lr from_fit: {err}") from None
    data = data if isinstance(data, dict) else {}
    try:
        law = HparamLaw.from_dict(data if "fittable" in data else data.get("lr_law"), "lr")
    except KeyError as err:
        raise ValueError(f"lr from_fit: {path}: lr_law: missing key {err}") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"lr from_fit: {path}: {err}") from None
    if law.reason == ABSENT:
        raise ValueError(f"lr from_fit: {path} has no 'lr_law' section; write one with "
                         "`scaling fit SOURCE --json OUT` on results with hparam rows")
    if not law.fittable:
        raise NotFittable(f"lr from_fit: {path}: lr_law not fittable: {law.reason}")
    return LrLaw(law.coefficient, law.exponent, law.x_range, str(path))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
