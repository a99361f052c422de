"""Extrapolation back-test: fit every method without the held-out budgets, judge each of them.

A scaling law is only useful if it extrapolates, so the check is the one that matters in use
(Hoffmann et al. 2022 trained Chinchilla itself to test Approach 3's forecast; Porian et al.
2024 report the error of L* at the next budget).

Which runs are held out: the planner marks them (group == "held_out", one or several budgets);
the methods are fitted on every other run and judged on EXACTLY the held-out runs, each
held-out budget on its own. A table without that group holds out its largest budget. E.g.
budgets 1e17..1e19 plus held-out 3e19 and 1e20: every fit sees the five planned budgets, and
3e19 and 1e20 are each predicted and judged. The headline fit then uses every run, held-out
ones included: validate first, then use all the evidence.

Each method forecasts two things per held-out budget (judge/forecast.py judges them):
- parametric: the loss, as the lowest PREDICTED loss over the held-out runs' own (N, D)
  against the lowest measured (same grid on both sides, no FLOP convention enters); N* as the
  law's compute optimum at C.
- isoflop: N* = k C^a; the loss from its frontier E + A C^-alpha through the fitted budgets'
  vertices (needs 4 budgets), against the held-out budget's lowest measured loss (one measured
  loss per budget for every method).
- envelope: N* = k C^a and the loss frontier through the envelope, from the curves of the
  fitted runs only, against the held-out budget's lowest measured loss.
The observed N* is the held-out budget's own parabola vertex (its lowest-loss run when the
vertex is at the grid's edge). A held-out budget whose sizes cannot pin that vertex well is
flagged (BudgetCheck.caveat) and still judged, the caveat said beside every verdict: two sizes
within 25% of each other (NEAR_DUPLICATE), or a grid under 3/4 of the fitted budgets' median
span in log N whose largest size is the largest the table holds (the dial's cap). E.g.
examples/simulated.yaml's first design at 1e21 FLOPs: depth max 48 made its sizes 7.3e8 ..
5.2e9, 5.5e9 (a 7.6x span against 15x below it), and its vertex 2.2e9 was 21% under the
law's 2.78e9. The measured N* is judged with its own 95% interval (vertex.py).
The JSON's top-level keys describe the largest held-out budget (the longest extrapolation);
"budgets" lists every one, "methods" the verdict per method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from scaling_orchestrator.analysis.data.points import Points, final_rows
from scaling_orchestrator.analysis.data.schema import HELD_OUT
from scaling_orchestrator.analysis.errors import NotFittable, Unfit
from scaling_orchestrator.analysis.judge.forecast import (
    DEFAULT_PARAMS_THRESHOLD,
    DEFAULT_THRESHOLD,
    Forecast,
    MethodCheck,
    method_summary,
    not_judged,
    rank,
)
from scaling_orchestrator.analysis.judge.recommend import METHODS, flops_per_token_model, frontier_or_reason
from scaling_orchestrator.analysis.judge.vertex import vertex_interval
from scaling_orchestrator.analysis.laws.choice import NEAR_GRID_STARTS, fit_near
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, LawForm, law_form, law_from_dict
from scaling_orchestrator.analysis.methods.envelope import fit_envelope, has_curves
from scaling_orchestrator.analysis.methods.isoflop import fit_budget, fit_isoflop

BY_GROUP = "group column"
BY_LARGEST = "largest budget (no held-out group in the table)"
NEAR_DUPLICATE = 1.25      # two sizes closer than this ratio measure one point of the parabola
NARROW_GRID = 0.75         # a span in log N under this share of the fitted budgets' median
__all__ = ["DEFAULT_THRESHOLD", "DEFAULT_PARAMS_THRESHOLD", "Backtest", "run_backtest"]


@dataclass(frozen=True)
class BudgetCheck:
    """One held-out budget: what was measured there and every method's two forecasts."""

    held_out_flops: float
    n_held_out_runs: int
    observed_loss: float            # lowest final loss measured at this budget
    observed_params: float | None   # N* measured: the budget's own vertex (None: no interior one)
    observed_params_from: str
    compute_optimal_loss: float | None   # the parametric law's L* at C, for reference
    checks: dict                    # method -> MethodCheck
    caveat: str = ""                # why the measured N* here is uncertain ("" when it is not)

    @property
    def predicted_loss(self) -> float | None:
        return self.checks["parametric"].loss.predicted

    @property
    def rel_error(self) -> float | None:
        return self.checks["parametric"].loss.rel_error

    @property
    def parametric_params(self) -> float | None:
        return self.checks["parametric"].params.predicted

    @property
    def predicted_params(self) -> float | None:
        return self.checks["isoflop"].params.predicted

    @property
    def params_rel_error(self) -> float | None:
        return self.checks["isoflop"].params.rel_error

    def to_dict(self, threshold: float, method: str) -> dict:
        """The keys every version wrote (parametric loss, IsoFLOP N*), then "methods"."""
        iso = self.checks["isoflop"].params
        out = {"held_out_flops": self.held_out_flops, "threshold": threshold,
               "n_held_out_runs": self.n_held_out_runs, "observed_loss": self.observed_loss,
               "predicted_loss": self.predicted_loss,
               "compute_optimal_loss": self.compute_optimal_loss,
               "parametric_params": self.parametric_params, "rel_error": self.rel_error,
               "passed": self.checks[method].passed, "observed_params": self.observed_params,
               "observed_params_from": self.observed_params_from,
               "predicted_params": self.predicted_params,
               "params_rel_error": self.params_rel_error,
               "methods": {m: c.to_dict() for m, c in self.checks.items()},
               "caveat": self.caveat}
        if not iso.judged and iso.note:
            out["params_note"] = iso.note
        return out

    @classmethod
    def from_dict(cls, d: dict) -> BudgetCheck:
        return cls(float(d["held_out_flops"]), int(d["n_held_out_runs"]), d["observed_loss"],
                   d["observed_params"], d["observed_params_from"], d["compute_optimal_loss"],
                   {m: MethodCheck.from_dict(c, m) for m, c in d["methods"].items()},
                   d.get("caveat", ""))


@dataclass(frozen=True)
class Backtest:
    """Every held-out budget judged against fits made without any of them."""

    budgets: tuple[BudgetCheck, ...]     # ascending in FLOPs; the last is the longest reach
    held_out_by: str                     # BY_GROUP or BY_LARGEST
    threshold: float                     # loss
    n_train_budgets: int
    law: object | None                   # the parametric law fitted without the held-out runs
    form: LawForm                        # its form (its constants name "parametric_fit")
    params_threshold: float = DEFAULT_PARAMS_THRESHOLD
    headline_method: str = ""            # the fit's headline method; "" -> the best ranked
    fittable: ClassVar[bool] = True

    @property
    def largest(self) -> BudgetCheck:
        return self.budgets[-1]

    @property
    def held_out_flops(self) -> tuple[float, ...]:
        return tuple(b.held_out_flops for b in self.budgets)

    @property
    def methods(self) -> dict:
        """method -> {passed, tier, score, loss_rel_error, params_rel_error, loss, params}."""
        return {m: method_summary([b.checks[m] for b in self.budgets], self.held_out_flops)
                for m in METHODS if all(m in b.checks for b in self.budgets)}

    @property
    def ranking(self) -> list[str]:
        return rank(self.methods, METHODS)

    @property
    def method(self) -> str:
        return self.headline_method or self.ranking[0]

    @property
    def passed(self) -> bool:
        """The headline method's loss AND N* forecasts held at every held-out budget."""
        return self.methods[self.method]["passed"]

    def to_dict(self) -> dict:
        """The largest budget's keys at the top (the `scaling fit --json` contract), then
        "budgets" (every held-out budget), "methods" and the method "passed" speaks for."""
        top = self.largest.to_dict(self.threshold, self.method)
        law = self.law.params() if self.law is not None else {}
        out = {"fittable": True, "held_out_flops": top["held_out_flops"],
               "threshold": self.threshold, "params_threshold": self.params_threshold,
               "n_train_budgets": self.n_train_budgets,
               "n_held_out_runs": top["n_held_out_runs"], "observed_loss": top["observed_loss"],
               "parametric_fit": {**({"law": self.form.name} if law else {}),
                                  **{k: law[k] for k in self.form.constants if k in law}}}
        out.update({k: v for k, v in top.items() if k not in out and k != "methods"})
        out["passed"] = self.passed
        out["method"] = self.method
        out["methods"] = self.methods
        out["ranking"] = self.ranking
        out["budgets"] = [b.to_dict(self.threshold, self.method) for b in self.budgets]
        out["held_out_by"] = self.held_out_by
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Backtest:
        """The back-test as fit.json holds it; its law is the one fitted without the held-out
        runs (its constants only: "parametric_fit")."""
        fitted = d.get("parametric_fit") or {}
        form = law_form(fitted.get("law") or DEFAULT_FORM)
        law = law_from_dict(fitted) if fitted else None
        return cls(tuple(BudgetCheck.from_dict(b) for b in d["budgets"]), d["held_out_by"],
                   float(d["threshold"]), int(d["n_train_budgets"]), law, form,
                   float(d["params_threshold"]), d.get("method", ""))


def held_out_split(points: Points, rows: np.ndarray,
                   window: int = 5) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows to fit, rows to judge, how they were chosen) among the final rows `rows`.

    Without the planner's group: the largest budget, or, when it cannot show its own N* (one
    run, a vertex at the grid's edge), every budget from the largest that can. E.g. Epoch's
    Chinchilla points snap to 35 budgets whose top two hold one run each: 2.8e21 (6 runs, an
    interior vertex) and the three above it are held out, the 31 below it fitted."""
    budget = np.asarray(points.budget, float)
    if points.group is not None and (points.group[rows] == HELD_OUT).any():
        held = points.group[rows] == HELD_OUT
        n_fit = len(np.unique(budget[rows[~held]]))
        if n_fit < 2:
            raise NotFittable(f"{n_fit} budget(s) outside the held-out group; the back-test "
                              "needs 2 to fit")
        return rows[~held], rows[held], BY_GROUP
    budgets = np.unique(budget[rows])
    if len(budgets) < 3:
        raise NotFittable(f"{len(budgets)} budget(s); the back-test needs 3 (2 to fit, "
                          "1 to predict)")
    cut = budgets[-1]
    for b in budgets[:1:-1]:    # largest first, leaving 2 budgets to fit
        if _measures_n_opt(points, rows[budget[rows] == b], float(b), window):
            cut = b
            break
    held = budget[rows] >= cut
    return rows[~held], rows[held], BY_LARGEST


def grid_caveat(points: Points, held_rows: np.ndarray, fit_rows: np.ndarray) -> str:
    """Why a held-out budget's sizes cannot pin its own N* well (module doc), or ""."""
    params = np.asarray(points.params, float)
    budget = np.asarray(points.budget, float)
    sizes = np.unique(params[held_rows])
    out = []
    ratios = sizes[1:] / sizes[:-1]
    if len(ratios) and ratios.min() < NEAR_DUPLICATE:
        i = int(np.argmin(ratios))
        out.append(f"two of its sizes are near-duplicates ({sizes[i]:.3g} and {sizes[i + 1]:.3g})")
    spans = [np.ptp(np.log(np.unique(params[fit_rows][budget[fit_rows] == b])))
             for b in np.unique(budget[fit_rows])]
    here = np.ptp(np.log(sizes)) if len(sizes) else 0.0
    if spans and here < NARROW_GRID * np.median(spans) and sizes[-1] >= params.max():
        out.append(f"its sizes span {np.exp(here):.2g}x against {np.exp(np.median(spans)):.2g}x "
                   f"below it, capped at the largest size trained ({sizes[-1]:.3g})")
    return "; ".join(out)


def _measures_n_opt(points, rows, flops: float, window: int) -> bool:
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    vertex = fit_budget(flops, N, D, L, window=window)
    return vertex.fittable and not vertex.edge


@dataclass(frozen=True)
class _Fitted:
    """Every method fitted without the held-out runs; a *_why says why one cannot forecast."""

    law: object | None
    law_why: str
    law_broken: bool           # the law was fitted but its constants are not finite
    iso: object                # IsoflopFit | Unfit
    iso_frontier: object | None
    iso_frontier_why: str
    env: object                # EnvelopeFit | Unfit
    env_frontier: object | None
    env_frontier_why: str
    fpt: Callable | None
    curve: object = Unfit("not attempted")   # CurveMethod | Unfit


def run_backtest(points: Points, curves: Points | None = None, *,
                 threshold: float = DEFAULT_THRESHOLD,
                 params_threshold: float = DEFAULT_PARAMS_THRESHOLD, window: int = 5,
                 form: LawForm | None = None, curve_fit: Callable | None = None,
                 near=None) -> Backtest:
    """Fit every method without the held-out runs (curves: every evaluation, for the
    envelope), judge each held-out budget; NotFittable when fewer than 2 budgets are left.
    form: the parametric law form (chinchilla when None); one needing unique tokens reads
    them from points.unique. curve_fit(held-out run ids): the curve method fitted without
    them, judged like the others when given. near: the form fitted on every run; the law
    without the held-out runs then starts from it, not the whole grid (Form.near_starts)."""
    form = form or law_form(DEFAULT_FORM)
    rows = final_rows(points)
    fit_rows, test_rows, held_out_by = held_out_split(points, rows, window)
    budget = np.asarray(points.budget, float)
    n_train = int(len(np.unique(budget[fit_rows])))
    which = (f"{n_train} smaller budgets" if held_out_by == BY_LARGEST
             else f"{n_train} budgets outside the held-out group")
    held_runs = np.unique(np.asarray(points.run)[test_rows])
    train_curves = None
    if curves is not None:
        train_curves = curves.select(~np.isin(np.asarray(curves.run), held_runs))
    fitted = _fit_without(points.select(fit_rows), train_curves, which, form,
                          window, flops_per_token_model(points), near)
    if curve_fit is not None:
        fitted = replace(fitted, curve=_attempt(lambda: curve_fit(held_runs), f"curve on the {which}"))
    checks = tuple(replace(_judge(points, test_rows[budget[test_rows] == b], float(b), fitted,
                                  (threshold, params_threshold), window),
                           caveat=grid_caveat(points, test_rows[budget[test_rows] == b], fit_rows))
                   for b in np.unique(budget[test_rows]))
    return Backtest(checks, held_out_by, threshold, n_train, fitted.law, form, params_threshold)


def _fit_without(train: Points, train_curves, which: str, form: LawForm, window: int,
                 fpt, near=None) -> _Fitted:
    law, law_why, broken = None, "", False
    NDLU = (train.params, train.tokens, train.loss, train.unique)
    try:
        law = (fit_near(form, near, *NDLU, n_grid_starts=NEAR_GRID_STARTS)
               if near is not None and form.near_starts else form.fit(*NDLU))
    except (NotFittable, ValueError) as exc:
        law_why = f"parametric on the {which}: {exc}"
    if law is not None:   # R_D* = inf is a meaning (no repeats), not an overflow
        bad = {k: v for k, v in law.params().items() if k in form.constants
               and not np.isfinite(v) and not (k in form.may_be_infinite and v == np.inf)}
        if bad:   # e.g. alpha ran off to ~100 and A overflowed: these budgets pin no law
            broken = True
            constants = law.params()
            finite = {k: constants[k] for k in form.constants if k not in bad}
            law_why = (f"the parametric fit on the {which} is degenerate "
                       f"({', '.join(f'{k} = {v}' for k, v in bad.items())}, "
                       f"{', '.join(f'{k} = {v:.3g}' for k, v in finite.items())})")
    iso = _attempt(lambda: fit_isoflop(train, window=window), f"isoflop on the {which}")
    env = Unfit("no training curves")
    if train_curves is not None and has_curves(train_curves):
        env = _attempt(lambda: fit_envelope(train_curves), f"envelope on the {which}")
    iso_frontier, iso_why = frontier_or_reason("isoflop", iso)
    env_frontier, env_why = frontier_or_reason("envelope", env)
    return _Fitted(law, law_why, broken, iso, iso_frontier, iso_why, env, env_frontier,
                   env_why, fpt)


def _attempt(fit, label: str):
    try:
        return fit()
    except (NotFittable, ValueError) as exc:
        return Unfit(f"{label}: {exc}")


def _judge(points, rows, held: float, fitted: _Fitted, thresholds, window: int) -> BudgetCheck:
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    observed = float(L.min())
    vertex = fit_budget(held, N, D, L, window=window)
    if vertex.fittable and not vertex.edge:
        n_obs, n_how = vertex.params_opt, "parabola vertex"
    else:   # one run, or a minimum at the grid's end: no N* measured here, none judged
        n_obs = None
        n_how = "no N* measured: " + (vertex.reason or "the minimum is at the grid's edge")
    measured = (observed, "the lowest measured loss")
    U = None if points.unique is None else np.asarray(points.unique, float)[rows]
    par, optimal_loss = _parametric(fitted, (N, D, U), held, observed, n_obs, thresholds)
    checks = {"parametric": par,
              "isoflop": _power_law("isoflop", fitted.iso, fitted.iso_frontier,
                                    fitted.iso_frontier_why, held, measured, n_obs, thresholds),
              "envelope": _power_law("envelope", fitted.env, fitted.env_frontier,
                                     fitted.env_frontier_why, held, measured, n_obs, thresholds),
              "curve": _power_law("curve", fitted.curve, fitted.curve, "", held, measured, n_obs, thresholds)}
    ci = None if n_obs is None else vertex_interval(N, L, window)   # the vertex's own 95%
    checks = {m: replace(c, params=not_judged("params", thresholds[1], n_how) if n_obs is None
                         else replace(c.params, observed_ci=ci)) for m, c in checks.items()}
    return BudgetCheck(held, int(len(rows)), observed, n_obs, n_how, optimal_loss, checks)


def _parametric(fitted: _Fitted, NDU, held, observed, n_obs, thresholds):
    """(MethodCheck, the law's L* at C or None)."""
    t_loss, t_params = thresholds
    law = fitted.law
    if law is None or fitted.law_broken:
        why, broken = fitted.law_why, fitted.law_broken
        return MethodCheck("parametric", Forecast("loss", None, observed, t_loss, why, broken),
                           Forecast("params", None, n_obs, t_params, why, broken)), None
    predicted = float(np.min(law.predict(*NDU)))
    loss = Forecast("loss", predicted, observed, t_loss,
                    "lowest predicted loss over the held-out runs' (N, D) vs the lowest measured")
    try:
        n_opt, _, l_opt = law.compute_optimal(held, fitted.fpt)
        n_opt, l_opt = (float(np.asarray(v).ravel()[0]) for v in (n_opt, l_opt))
    except (ArithmeticError, ValueError):   # an exponent fitted at 0: no optimum to report
        n_opt = l_opt = None
    params = Forecast("params", n_opt, n_obs, t_params, "" if n_opt is not None and
                      np.isfinite(n_opt) else "the law has no finite compute optimum",
                      broken=n_opt is None or not np.isfinite(n_opt))
    return MethodCheck("parametric", loss, params), l_opt


def _power_law(method, fit, frontier, frontier_why, held, observed_loss, n_obs,
               thresholds) -> MethodCheck:
    t_loss, t_params = thresholds
    loss_obs, loss_how = observed_loss
    if not fit.fittable:
        return MethodCheck(method, not_judged("loss", t_loss, fit.reason, loss_obs),
                           not_judged("params", t_params, fit.reason, n_obs))
    params = Forecast("params", float(fit.params_opt(held)), n_obs, t_params)
    if frontier is None:
        return MethodCheck(method, not_judged("loss", t_loss, frontier_why, loss_obs), params)
    loss = Forecast("loss", float(frontier.predict(held)), loss_obs, t_loss,
                    f"its loss frontier at C vs {loss_how}")
    return MethodCheck(method, loss, params)
