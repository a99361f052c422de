"""FitResult: every method's fit on one table, typed, with the questions a user asks of it.

`scaling_orchestrator.analysis.fit(source)` returns one. Its pieces are the methods' own result
objects (an Unfit in the slot of a method that could not run); `to_dict()` is the `scaling fit
--json` structure (DESIGN.md) and `FitResult.from_dict` / `FitResult.load(path)` read it back
(fit_json.py), `predict(N, D)` the loss by the headline method's law (prediction.py says
which), `compute_optimal(C)` the headline method's recommendation at any budget
(method="all": every method's), `write_report(out_dir)` report.md / report.html / PNGs /
fit.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling_orchestrator.analysis.data.points import Points
from scaling_orchestrator.analysis.data.saved import read_fit_json
from scaling_orchestrator.analysis.errors import Unfit
from scaling_orchestrator.analysis.fit_json import fields_from_dict
from scaling_orchestrator.analysis.judge.backtest import Backtest
from scaling_orchestrator.analysis.judge.headline import Headline
from scaling_orchestrator.analysis.judge.recommend import METHODS, Recommendation, check_targets, recommend
from scaling_orchestrator.analysis.laws.choice import LawChoice
from scaling_orchestrator.analysis.laws.registry import ParametricResult
from scaling_orchestrator.analysis.methods.envelope import EnvelopeFit
from scaling_orchestrator.analysis.methods.hparam_laws import HparamFit, HparamLaw
from scaling_orchestrator.analysis.methods.isoflop import IsoflopFit
from scaling_orchestrator.analysis.methods.single_variable import KaplanFit
from scaling_orchestrator.analysis.numerics import to_plain
from scaling_orchestrator.analysis.prediction import HEADLINE, predict_with, prediction_law
from scaling_orchestrator.analysis.report.summary import format_summary
from scaling_orchestrator.analysis.report.write import write_report

EXPONENT_NAMES = ("a", "b")
ALL = "all"     # compute_optimal(C, method=...): every method's (HEADLINE: the headline's)


@dataclass(frozen=True)
class DataSummary:
    """What was fitted: counts, budgets, and what was left out and why."""

    source: str
    n_rows: int
    n_final_points: int
    n_runs: int
    budgets: tuple[float, ...]
    excluded: dict  # reason -> rows dropped
    excluded_trials: dict  # status ("diverged", "failed") -> trial ids
    training_curves: bool
    n_hparam_trials: int = 0
    derived: tuple[str, ...] = ()  # columns computed, e.g. "params = flops / (6 tokens)"
    backends: tuple[str, ...] = ()  # the rows' backend values: ("simulate",) = drawn from a law

    @property
    def n_budgets(self) -> int:
        return len(self.budgets)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "n_rows": self.n_rows,
            "n_final_points": self.n_final_points,
            "n_runs": self.n_runs,
            "n_budgets": self.n_budgets,
            "budgets": list(self.budgets),
            "excluded": dict(self.excluded),
            "excluded_trials": dict(self.excluded_trials),
            "training_curves": self.training_curves,
            "n_hparam_trials": self.n_hparam_trials,
            "derived": list(self.derived),
            "backends": list(self.backends),
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> DataSummary:
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise ValueError(f"{d!r:.60} is not a section (a JSON object)")
        counts = (int(d.get(k, 0)) for k in ("n_rows", "n_final_points", "n_runs"))
        return cls(d.get("source", ""), *counts, tuple(map(float, d.get("budgets", ()))),
                   dict(d.get("excluded") or {}), dict(d.get("excluded_trials") or {}),
                   bool(d.get("training_curves", False)), int(d.get("n_hparam_trials", 0)),
                   tuple(d.get("derived", ())), tuple(d.get("backends", ())))


@dataclass(frozen=True)
class ExponentComparison:
    """One exponent (a of N* ~ C^a, or b of D* ~ C^b) across the methods that ran."""

    methods: dict  # method -> (value, [lo, hi] or None)
    intervals_overlap: bool | None  # None: fewer than two intervals to compare

    @property
    def flag(self) -> bool:
        return self.intervals_overlap is False

    def to_dict(self) -> dict:
        return {
            "methods": {m: {"value": v, "ci95": ci} for m, (v, ci) in self.methods.items()},
            "intervals_overlap": self.intervals_overlap,
            "flag": self.flag,
        }


@dataclass(frozen=True)
class Disagreement:
    a: ExponentComparison
    b: ExponentComparison

    @property
    def flag(self) -> bool:
        return self.a.flag or self.b.flag

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "flag": self.flag}


def compare_exponents(sections: dict) -> Disagreement:
    """a and b side by side per method; flag when the available 95% intervals share no point.
    sections: method -> a fit with fittable, a, b and ci95 (or an Unfit)."""
    compared = []
    for name in EXPONENT_NAMES:
        rows = {m: (getattr(s, name), s.ci95.get(name)) for m, s in sections.items() if s.fittable}
        intervals = [ci for _, ci in rows.values() if ci is not None]
        overlap = (
            max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals) if len(intervals) >= 2 else None
        )
        compared.append(ExponentComparison(rows, overlap))
    return Disagreement(*compared)


@dataclass(frozen=True)
class FitResult:
    """Every method on one table. A method that could not run holds an Unfit (its reason)."""

    data: DataSummary
    parametric: ParametricResult | Unfit
    isoflop: IsoflopFit | Unfit
    envelope: EnvelopeFit | Unfit
    kaplan: KaplanFit
    backtest: Backtest | Unfit
    hparams: HparamFit
    recommendations: tuple[Recommendation, ...]  # per target_flops and method
    frontier_grid: dict  # method -> Recommendations on a plot grid
    disagreement: Disagreement
    target_flops: tuple[float, ...]
    points: Points | None = None  # the final points and curves fitted
    flops_per_token: Callable | None = None  # read off the table; None: 6N
    loss_frontiers: dict = field(default_factory=dict)  # isoflop/envelope -> L*(C) or None
    n_bootstrap: int = 0  # resamples asked for (read back: the rows fit.json kept)
    headline: tuple[Headline, ...] = ()  # one recommendation per target (judge/headline.py)
    warnings: tuple[str, ...] = ()  # sentences a reader needs (judge/warnings.py)
    law: LawChoice | None = None  # the parametric form and how it was chosen
    curve: object = Unfit("not attempted")  # the curve method: CurveMethod | Unfit (methods/curve.py)

    @classmethod
    def from_dict(cls, plain: dict) -> FitResult:
        """The FitResult a to_dict() structure describes (fit.json): enough to predict(N, D),
        compute_optimal(C), read the lr and batch laws, and give to_dict() back (fit_json.py
        says what is rebuilt and what a file does not keep). ValueError naming the section
        that cannot be read."""
        fields = fields_from_dict(plain)
        try:
            data = DataSummary.from_dict(plain.get("data"))
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"data: {err}") from None
        return cls(data, disagreement=compare_exponents({m: fields[m] for m in METHODS}), **fields)

    @classmethod
    def load(cls, path) -> FitResult:
        """FitResult.from_dict of a `scaling fit --json` file; the errors name the path."""
        plain = read_fit_json(path)
        try:
            return cls.from_dict(plain)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @property
    def lr_law(self) -> HparamLaw:
        return self.hparams.lr

    @property
    def batch_law(self) -> HparamLaw:
        return self.hparams.batch

    @property
    def sections(self) -> dict:
        """method -> its fit (or Unfit), in METHODS order."""
        return {m: getattr(self, m) for m in METHODS}

    def predict(self, N, D, U=None, *, interval: bool = False, method: str = HEADLINE, C=None):
        """Loss (nats/token) at N parameters and D tokens (U unique tokens, for a law that needs
        them) by `method`'s law (prediction.py): "headline" (default) the headline method's where
        it has one, else the parametric law; "parametric", "isoflop" or "envelope" by name.
        `prediction_law(method)` says which, in words. A loss frontier reads C FLOPs per point
        (default: the table's FLOPs per token at N, times D). interval=True: (loss, lo, hi), the
        bootstrap's 95% (lo, hi None without one). `scaling predict` computes the same from
        fit.json."""
        return predict_with(self, N, D, U, interval=interval, method=method, C=C)

    def prediction_law(self, method: str = HEADLINE) -> str:
        """The law predict(..., method=method) uses, in words (which method, which form)."""
        return prediction_law(self, method)

    @property
    def headline_method(self) -> str:
        """The method the headline answers with (judge/headline.py); parametric without one."""
        return self.headline[0].method if self.headline else "parametric"

    def compute_optimal(self, C, method: str = HEADLINE):
        """Recommendations at C FLOPs (a number or a sequence): by default the headline's method
        (one Recommendation when C is a single number, a tuple per C otherwise); method= one of
        METHODS for that method's; method="all" every method's rows, as in
        to_dict()["compute_optimal"]."""
        allowed = (HEADLINE, ALL, *METHODS)
        if method not in allowed:
            raise ValueError(f"method={method!r}: allowed {', '.join(allowed)}")
        targets = check_targets(np.atleast_1d(np.asarray(C, dtype=float)))
        rows = recommend(self.sections, self.loss_frontiers, targets, self.flops_per_token)
        if method == ALL:
            return rows
        method = self.headline_method if method == HEADLINE else method
        picked = tuple(r for r in rows if r.method == method)
        return picked[0] if np.ndim(C) == 0 else picked

    def to_dict(self) -> dict:
        """The `scaling fit --json` structure: strict-JSON plain values (NaN -> null)."""
        out = {
            "data": self.data.to_dict(),
            **{m: s.to_dict() for m, s in self.sections.items()},
            "kaplan": self.kaplan.to_dict(),
            "backtest": self.backtest.to_dict(),
            "compute_optimal": [r.to_dict() for r in self.recommendations],
            "frontier_grid": {m: [r.to_dict() for r in rows] for m, rows in self.frontier_grid.items()},
            "disagreement": self.disagreement.to_dict(),
            **self.hparams.to_dict(),
            "headline": [h.to_dict() for h in self.headline],
            "warnings": list(self.warnings),
        }
        if self.law is not None:
            out["law"] = self.law.to_dict()
        return to_plain(out)

    def summary(self) -> str:
        """The text `scaling fit` prints."""
        return format_summary(self)

    def write_report(self, out_dir) -> dict[str, Path]:
        """report.md, report.html, the PNGs and fit.json into out_dir; name -> path."""
        return write_report(self, out_dir)

