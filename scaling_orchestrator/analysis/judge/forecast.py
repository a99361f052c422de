"""One forecast judged against what was measured, and the per-method verdict of the back-test.

Every method that recommends (N*, D*, L*) makes two forecasts for a held-out budget C: the
lowest loss reachable at C and the N* that reaches it. Each is judged on its own against a
stated threshold:

- loss: |predicted - observed| / observed <= 3% (DEFAULT_THRESHOLD). A loss error well above
  the ~0.5% seed noise of small runs and below the gap between the papers' approaches.
- N*: |predicted - observed| / observed <= 25% (DEFAULT_PARAMS_THRESHOLD). N* sits in a flat
  valley (Chinchilla Fig. 3: a 30% miss in N* costs under 1% in loss), so its threshold is
  wider, but it is the quantity the recommendation is for: a 29% miss is a miss. The
  measured N* is a parabola vertex through a few noisy runs, with its own 95% interval
  (vertex.py): the forecast holds when it is within the threshold of some value inside that
  interval ([lo (1 - t), hi (1 + t)]), and its score is the distance to the nearest such value.

A method PASSES when both of its forecasts were judged (each at some held-out budget) and held
wherever they were judged.
A forecast that could not be made (too few budgets for the method) is "not judged", with the
reason; one the fit could not make finite counts as a miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.03
DEFAULT_PARAMS_THRESHOLD = 0.25
QUANTITIES = ("loss", "params")


@dataclass(frozen=True)
class Forecast:
    """One predicted quantity against the measured one; error = (predicted - observed)/observed."""

    quantity: str                  # "loss" (nats/token) or "params" (N*)
    predicted: float | None
    observed: float | None
    threshold: float               # largest |error| that passes
    note: str = ""                 # how the observed value was read, or why nothing was judged
    broken: bool = False           # the method's fit gave no finite forecast: a miss
    observed_ci: tuple | None = None  # the measured value's own 95% interval, when it has one

    @property
    def judged(self) -> bool:
        return _finite(self.observed) and (self.broken or _finite(self.predicted))

    @property
    def error(self) -> float | None:
        """Signed: -0.28 is a forecast 28% below what was measured."""
        if self.broken or not self.judged:
            return None
        return (self.predicted - self.observed) / self.observed

    @property
    def rel_error(self) -> float | None:
        return None if self.error is None else abs(self.error)

    @property
    def passed(self) -> bool | None:
        """None when not judged."""
        if not self.judged:
            return None
        if self.broken:
            return False
        return bool(self.rel_error <= self.threshold if self.observed_ci is None else self.score <= 1.0)

    @property
    def score(self) -> float | None:
        """|error| in units of the threshold (1.16: 16% past it); inf for a broken fit. With
        observed_ci, the error to the nearest value inside it (0 within it)."""
        if not self.judged:
            return None
        if self.broken:
            return math.inf
        if self.observed_ci is None:
            return self.rel_error / self.threshold
        lo, hi = min(self.observed_ci[0], self.observed), max(self.observed_ci[1], self.observed)
        nearest = min(max(self.predicted, lo), hi)
        return abs(self.predicted - nearest) / nearest / self.threshold

    def to_dict(self) -> dict:
        out = {"predicted": self.predicted, "observed": self.observed, "error": self.error,
               "rel_error": self.rel_error, "threshold": self.threshold,
               "judged": self.judged, "passed": self.passed}
        if self.observed_ci is not None:
            out["observed_ci"] = [float(v) for v in self.observed_ci]
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, d: dict, quantity: str) -> Forecast:
        """A forecast as fit.json holds it: a judged one without an error was broken."""
        return cls(quantity, d["predicted"], d["observed"], float(d["threshold"]), d.get("note", ""),
                   broken=bool(d["judged"]) and d["error"] is None,
                   observed_ci=tuple(d["observed_ci"]) if d.get("observed_ci") else None)


def not_judged(quantity: str, threshold: float, why: str, observed=None) -> Forecast:
    return Forecast(quantity, None, observed, threshold, why)


@dataclass(frozen=True)
class MethodCheck:
    """One method's two forecasts at one held-out budget."""

    method: str
    loss: Forecast
    params: Forecast

    @property
    def forecasts(self) -> tuple[Forecast, Forecast]:
        return self.loss, self.params

    @property
    def passed(self) -> bool:
        return all(f.passed is True for f in self.forecasts)

    def to_dict(self) -> dict:
        return {"loss": self.loss.to_dict(), "params": self.params.to_dict(),
                "passed": self.passed}

    @classmethod
    def from_dict(cls, d: dict, method: str) -> MethodCheck:
        return cls(method, *(Forecast.from_dict(d[q], q) for q in QUANTITIES))


def worst(checks, quantity: str, flops) -> tuple[Forecast, float]:
    """(the forecast of `quantity` with the largest miss over the held-out budgets, its
    budget); the first budget's when none was judged."""
    pairs = [(getattr(c, quantity), f) for c, f in zip(checks, flops)]
    judged = [p for p in pairs if p[0].judged]
    return max(judged, key=lambda p: p[0].score) if judged else pairs[0]


def tier(checks) -> int:
    """0: loss and N* each judged at some held-out budget and held wherever judged; 1: all
    that was judged held, but one of the two was judged nowhere; 2: a judged forecast missed;
    3: nothing could be judged. (A held-out budget with one run measures a loss but no N*: a
    property of that budget, not of the method.)"""
    judged = {q: [getattr(c, q) for c in checks if getattr(c, q).judged] for q in QUANTITIES}
    if not any(judged.values()):
        return 3
    if any(f.passed is False for fs in judged.values() for f in fs):
        return 2
    return 0 if all(judged.values()) else 1


def method_summary(checks, flops) -> dict:
    """A method over every held-out budget (checks and flops in the same order): passed, its
    tier, its worst loss and N* forecasts, each with the budget it was made for."""
    level = tier(checks)
    out = {"passed": level == 0, "tier": level}
    scores = []
    for quantity in QUANTITIES:
        forecast, at = worst(checks, quantity, flops)
        out[f"{quantity}_rel_error"] = forecast.rel_error
        out[quantity] = {**forecast.to_dict(), "held_out_flops": at}
        if forecast.judged:
            scores.append(forecast.score)
    out["score"] = max(scores) if scores else None
    return out


# The one vocabulary of a method's back-test, from the headline to the table (tier -> words).
TIER_WORDS = {0: "held", 1: "held where it could be judged", 2: "MISSED", 3: "not judged"}


def tier_word(summary: dict) -> str:
    """'held', 'held where it could be judged', 'MISSED' or 'not judged' for a method_summary."""
    return TIER_WORDS[summary["tier"]]


def rank(summaries: dict, order: tuple[str, ...]) -> list[str]:
    """Methods best first: by tier, then by the worst miss in threshold units, then `order`."""
    def key(m):
        s = summaries[m]
        return s["tier"], math.inf if s["score"] is None else s["score"], order.index(m)
    return sorted(summaries, key=key)


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)
