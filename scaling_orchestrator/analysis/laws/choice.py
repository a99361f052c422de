"""Which law form describes these runs: chosen by how well each extrapolates.

`--law auto` fits every form that the table can feed (a form needing unique tokens is skipped
without them) on all but the largest-compute slice of runs -- the planner's held-out group
when the table has one, else the largest budget -- and scores each on that slice: the mean
|predicted - measured| / measured loss over the slice's runs (and R^2 there). The lowest error
wins and is then refitted on every run. E.g. on a sweep whose 7 largest runs are held out, a
form with R^2 -2.0 there loses to one with 0.91 however well it fits the rest.

A named law (`--law kaplan`) is used as given; its LawChoice says so and scores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling_orchestrator.analysis.data.points import Points, final_rows
from scaling_orchestrator.analysis.data.schema import HELD_OUT
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, Form, forms, law_form

AUTO = "auto"
# A form is scored only with at least this many points to fit per constant: Farseer's 9
# constants on the demo's 12 fitted runs would pass through the points rather than describe
# them (and its fit crawls there: 38 s against 0.8 s for Chinchilla's).
MIN_POINTS_PER_CONSTANT = 2
GIVEN = "given"
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

    def to_dict(self) -> dict:
        return {"name": self.name, "chosen_by": self.chosen_by,
                "candidates": [c.to_dict() for c in self.candidates]}


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


def score(form: Form, points: Points, fit_rows, test_rows, fit_options: dict) -> Candidate:
    """The form fitted on fit_rows, judged on test_rows."""
    if UNIQUE_TOKENS in form.required_columns and points.unique is None:
        return Candidate(form.name, skipped="needs a unique-tokens column (--unique-tokens)")
    need = MIN_POINTS_PER_CONSTANT * len(form.constants)
    if len(fit_rows) < need:
        return Candidate(form.name, skipped=f"{len(fit_rows)} runs to fit {len(form.constants)} "
                                            f"constants; needs at least {need}")
    U = None if points.unique is None else np.asarray(points.unique, float)
    arrays = [np.asarray(v, float) for v in (points.params, points.tokens, points.loss)]
    train = [a[fit_rows] for a in arrays] + [None if U is None else U[fit_rows]]
    try:
        law = form.fit(*train, **fit_options)
    except (NotFittable, ValueError) as exc:
        return Candidate(form.name, skipped=f"fit failed: {exc}")
    N, D, L = (a[test_rows] for a in arrays)
    with np.errstate(all="ignore"):
        predicted = np.asarray(law.predict(N, D, None if U is None else U[test_rows]), float)
    if not np.isfinite(predicted).all():
        return Candidate(form.name, skipped="its forecast on the held-out runs is not finite")
    error = float(np.mean(np.abs(predicted - L) / L))
    total = float(np.sum((L - L.mean()) ** 2))
    r2 = 1.0 - float(np.sum((L - predicted) ** 2)) / total if total > 0 else None
    return Candidate(form.name, error, r2)


def choose_law(points: Points, fit_options: dict | None = None) -> tuple[Form, LawChoice]:
    """The form whose forecast of the largest-compute slice misses least (ties: forms() order,
    chinchilla first). Without a slice to score on: chinchilla, saying why."""
    rows = final_rows(points)
    try:
        fit_rows, test_rows, how = held_out_slice(points, rows)
    except NotFittable as exc:
        return law_form(DEFAULT_FORM), LawChoice(DEFAULT_FORM, f"default: {exc}")
    candidates = tuple(score(form, points, fit_rows, test_rows, fit_options or {})
                       for form in forms().values())
    scored = [c for c in candidates if c.held_out_rel_error is not None]
    if not scored:
        return law_form(DEFAULT_FORM), LawChoice(DEFAULT_FORM, "default: no form could be "
                                                 f"scored on {how}", candidates)
    best = min(scored, key=lambda c: c.held_out_rel_error)
    chosen_by = (f"lowest mean |relative error| of loss on {how} ({len(test_rows)} runs), "
                 f"each form fitted on the other {len(fit_rows)}")
    return law_form(best.name), LawChoice(best.name, chosen_by, candidates)
