"""Which law form describes these runs: chosen by how well each extrapolates.

`--law auto` fits every form that the table can feed (a form needing unique tokens is skipped
without them) on all but the largest-compute slice of runs -- the planner's held-out group
when the table has one, else the largest budget -- and scores each on that slice: the mean
|predicted - measured| / measured loss over the slice's runs (and R^2 there). The lowest error
wins and is then refitted on every run. E.g. on a sweep whose 7 largest runs are held out, a
form with R^2 -2.0 there loses to one with 0.91 however well it fits the rest.

The refit on every run starts from the start grid AND from the held-out fit's optimum (and,
for Chinchilla, its runner-up basins), and keeps the better. A refit that cannot predict --
not converged, or a constant not finite (+inf allowed where the form gives it a meaning) --
is never the answer: the next candidate by held-out error is refitted instead, and the
choice says which forms were passed over and why (`rejected`, also in the fit's warnings).
E.g. a 270-run Farseer-shaped table: Farseer scored best on the largest budget, but its
refit on all runs ended with b = NaN; Chinchilla, second, is the law.

A named law (`--law kaplan`) is used as given; its LawChoice says so and scores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling_orchestrator.analysis.data.points import Points, final_rows
from scaling_orchestrator.analysis.data.schema import HELD_OUT
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.engine import fit_from_starts
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, Form, forms, law_form

AUTO = "auto"
# A form is scored only with at least this many points to fit per constant: Farseer's 9
# constants on the demo's 12 fitted runs would pass through the points rather than describe
# them (and its fit crawls there: 38 s against 0.8 s for Chinchilla's).
MIN_POINTS_PER_CONSTANT = 2
GIVEN = "given"
# The back-test refits the law without its held-out runs from the law on every run (its
# optimum and runner-up basins) and from the NEAR_GRID_STARTS grid starts lowest on the fitted
# runs, not by screening the whole grid (4,500 starts for Chinchilla). Checked against the
# screened fit on Epoch's points, the OLMo ladder, Datablations, Gadre's three sets, six of
# Porian's configurations, the eight Open-Athena sources, a 1,000-trial folder and 30
# synthetic tables: the same optimum on all but two synthetic tables (summed Huber within
# 3e-12 relative, constants and held-out forecasts within 4e-7), 0.1-1.9 s against 0.7-3.2 s
# CPU (busy 2-core machine). On one of the two the screen missed a lower optimum (-8e-11) the
# starts found; on the other it found a degenerate one 1% lower (beta = -59, B -> 0: its
# forecast overflows) where the starts give a finite law. Farseer's 9 constants are another
# matter (Epoch's points +1.2e-5 summed Huber, the OLMo ladder -3.4%, Datablations +7e-4, its
# constants 0.2x-40x apart): only forms with Form.near_starts (Chinchilla) start this way.
NEAR_GRID_STARTS = 8
UNIQUE_TOKENS = "unique_tokens"


@dataclass(frozen=True)
class Candidate:
    """One form's extrapolation to the held-out slice, or why it was not scored."""

    name: str
    held_out_rel_error: float | None = None   # mean |pred - obs| / obs over the slice
    r2: float | None = None                   # 1 - SS_res / SS_tot over the slice
    skipped: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "held_out_rel_error": self.held_out_rel_error,
                "r2": self.r2, "skipped": self.skipped}


@dataclass(frozen=True)
class LawChoice:
    """The form the fit uses and how it was chosen ("given", or the slice it was scored on)."""

    name: str
    chosen_by: str
    candidates: tuple[Candidate, ...] = ()
    rejected: tuple[str, ...] = ()   # one sentence per better-scored form whose refit failed

    def to_dict(self) -> dict:
        return {"name": self.name, "chosen_by": self.chosen_by,
                "candidates": [c.to_dict() for c in self.candidates],
                "rejected": list(self.rejected)}


def check_law(law: str, unique_tokens: str | None) -> None:
    """A law name that exists (or "auto"); a form needing U only with a U column."""
    if law != AUTO:
        form = law_form(law)
        if UNIQUE_TOKENS in form.required_columns and unique_tokens is None:
            raise ValueError(f"--law {law}: needs a unique-tokens column; pass "
                             "--unique-tokens COL (unique_tokens= in scaling_orchestrator.analysis.fit)")


def given(form: Form) -> LawChoice:
    return LawChoice(form.name, GIVEN)


def held_out_slice(points: Points, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows to fit, rows to score, which slice): the held-out group, else the largest budget.
    NotFittable when nothing is left on one side."""
    if points.group is not None and (points.group[rows] == HELD_OUT).any():
        held = points.group[rows] == HELD_OUT
        how = "the held-out group"
    else:
        budget = np.asarray(points.budget, float)[rows]
        held = budget == budget.max()
        how = f"the largest budget ({budget.max():.3g} FLOPs)"
    if held.all() or not held.any():
        raise NotFittable("one budget only: nothing to extrapolate to")
    return rows[~held], rows[held], how


def not_finite(form: Form, law) -> str:
    """Which constants of a fitted law are not finite ("" when none; +inf allowed where the
    form gives it a meaning): such a law cannot predict."""
    values = law.params()
    bad = [k for k in form.constants
           if not (np.isfinite(values[k]) or (k in form.may_be_infinite and values[k] == np.inf))]
    return ", ".join(f"{k} = {values[k]}" for k in bad) + " (not finite)" if bad else ""


def cannot_predict(form: Form, law) -> str:
    """Why a fitted law cannot be the answer ("" when it can): a constant not finite, else a
    fit that did not converge."""
    bad = not_finite(form, law)
    if bad:
        return bad
    if not law.converged:
        return f"its fit did not converge (summed Huber {law.objective:.4g})"
    return ""


def refit_from(form: Form, start_law, N, D, L, U=None, **fit_options):
    """The form fitted on these points from the start grid and from start_law's optimum (and
    basins): the grid's fit (its basins kept for the bootstrap) unless the other can predict
    where it cannot, or reaches a summed Huber loss lower by more than rounding."""
    grid = form.fit(N, D, L, U, **fit_options)
    try:
        near = fit_near(form, start_law, N, D, L, U)
    except (NotFittable, ValueError):
        return grid
    grid_fails, near_fails = bool(cannot_predict(form, grid)), bool(cannot_predict(form, near))
    if grid_fails != near_fails:
        return grid if near_fails else near
    lower = np.isfinite(near.objective) and not near.objective >= grid.objective * (1 - 1e-6)
    return near if lower else grid


def fit_near(form: Form, start_law, N, D, L, U=None, n_grid_starts: int = 0):
    """The form fitted from start_law's optimum (and, for Chinchilla, its runner-up basins)
    and from the n_grid_starts grid starts with the lowest loss on these points, each start
    run to convergence: no screen of the whole grid."""
    cols = form.columns(N, D, L, U)
    with np.errstate(all="ignore"):
        inner = np.atleast_2d(np.asarray(form.refit_starts(start_law, cols), float))
    inner = inner[np.isfinite(inner).all(axis=1)]
    if n_grid_starts > 0:
        inner = np.vstack([inner, lowest_starts(form, cols, n_grid_starts)])
    if not len(inner):
        raise ValueError("no finite start")
    found = fit_from_starts(form, cols, lambda data: inner, screen=False, frozen=form.frozen(cols))
    return form.law(found, cols, 1e-3)


def lowest_starts(form: Form, cols, n: int) -> np.ndarray:
    """The n rows of the form's start grid with the lowest summed Huber loss on cols."""
    grid = np.atleast_2d(np.asarray(form.starts(cols), float))
    loss, _ = form.objective(cols, 1e-3, form.frozen(cols)).value_grad(grid)   # inf: overflowed
    return grid[np.argsort(loss, kind="stable")[:n]]


def score(form: Form, points: Points, fit_rows, test_rows, fit_options: dict):
    """(Candidate, the law fitted on fit_rows or None): the form judged on test_rows."""
    if UNIQUE_TOKENS in form.required_columns and points.unique is None:
        return Candidate(form.name, skipped="needs a unique-tokens column (--unique-tokens)"), None
    need = MIN_POINTS_PER_CONSTANT * len(form.constants)
    if len(fit_rows) < need:
        return Candidate(form.name, skipped=f"{len(fit_rows)} runs to fit {len(form.constants)} "
                                            f"constants; needs at least {need}"), None
    U = None if points.unique is None else np.asarray(points.unique, float)
    arrays = [np.asarray(v, float) for v in (points.params, points.tokens, points.loss)]
    train = [a[fit_rows] for a in arrays] + [None if U is None else U[fit_rows]]
    try:
        law = form.fit(*train, **fit_options)
    except (NotFittable, ValueError) as exc:
        return Candidate(form.name, skipped=f"fit failed: {exc}"), None
    N, D, L = (a[test_rows] for a in arrays)
    with np.errstate(all="ignore"):
        predicted = np.asarray(law.predict(N, D, None if U is None else U[test_rows]), float)
    if not np.isfinite(predicted).all():
        return Candidate(form.name, skipped="its forecast on the held-out runs is not finite"), None
    error = float(np.mean(np.abs(predicted - L) / L))
    total = float(np.sum((L - L.mean()) ** 2))
    r2 = 1.0 - float(np.sum((L - predicted) ** 2)) / total if total > 0 else None
    return Candidate(form.name, error, r2), law


def choose_law(points: Points, fit_options: dict | None = None):
    """(form, LawChoice, its law refitted on every final run or None): the form whose forecast
    of the largest-compute slice misses least (ties: forms() order, chinchilla first) among those
    whose refit can predict. Without a slice to score on: chinchilla, saying why, and None (the
    caller fits it)."""
    rows = final_rows(points)
    try:
        fit_rows, test_rows, how = held_out_slice(points, rows)
    except NotFittable as exc:
        return law_form(DEFAULT_FORM), LawChoice(DEFAULT_FORM, f"default: {exc}"), None
    scored = [score(form, points, fit_rows, test_rows, fit_options or {}) for form in forms().values()]
    candidates = tuple(c for c, _ in scored)
    ranked = sorted((pair for pair in scored if pair[1] is not None), key=lambda p: p[0].held_out_rel_error)
    if not ranked:
        return law_form(DEFAULT_FORM), LawChoice(DEFAULT_FORM, "default: no form could be "
                                                 f"scored on {how}", candidates), None
    basis = (f"lowest mean |relative error| of loss on {how} ({len(test_rows)} runs), "
             f"each form fitted on the other {len(fit_rows)}")
    return refit_best(points, rows, ranked, basis, candidates, fit_options or {})


def refit_best(points: Points, rows, ranked, basis: str, candidates, fit_options: dict):
    """The first ranked (Candidate, held-out law) whose refit on every run can predict. None
    can: the first whose constants are at least finite (not converged, said so), else the
    best-scored form and no law (the caller records why it cannot predict)."""
    U = None if points.unique is None else np.asarray(points.unique, float)[rows]
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    rejected: list[str] = []
    finite = None
    for candidate, held_law in ranked:
        form = law_form(candidate.name)
        try:
            law = refit_from(form, held_law, N, D, L, U, **fit_options)
            problem = cannot_predict(form, law)
        except (NotFittable, ValueError) as exc:
            law, problem = None, f"its fit failed: {exc}"
        if not problem:
            chosen_by = basis if not rejected else (
                f"{basis}; the refit on all {len(rows)} runs of each better-scored form cannot "
                f"predict, so the next best ({'; '.join(rejected)})")
            return form, LawChoice(form.name, chosen_by, candidates, tuple(rejected)), law
        rejected.append(f"{form.name} refitted on all runs cannot predict: {problem}")
        if finite is None and law is not None and not not_finite(form, law):
            finite = (form, law)
    if finite is not None:
        form, law = finite
        return form, LawChoice(form.name, f"{basis}; no form's refit on all runs converged: the "
                               f"best-scored with finite constants", candidates, tuple(rejected)), law
    best = law_form(ranked[0][0].name)
    return best, LawChoice(best.name, f"{basis}; no form's refit on all runs can predict",
                           candidates, tuple(rejected)), None
