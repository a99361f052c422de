"""`scaling select --law auto`: which law form each selection round plans with.

The rule of `--law auto` in `scaling fit` (scaling_orchestrator.analysis.laws.choice): each form
is fitted on the runs chosen so far less the largest budgets among them (as many as hold
MIN_SLICE runs: one or two runs judge a form by their noise) and scored on those runs by mean
|relative error| of loss; the lowest wins, and another form displaces the default only by
missing MARGIN less (on Epoch's pool, Kaplan won the slice by noise and then forecast the
held-out runs 3.6% off where Chinchilla's fit of the same runs was 1.1% off). A round refits and
bootstraps its law, so the forms scored are those of at most MAX_CONSTANTS constants that
need no column beyond N, D and L (chinchilla and kaplan today): Farseer's 9 constants take
minutes a fit and need 18 runs before `scaling fit` would score them. The final fit of the
chosen runs uses the last round's choice, once.
"""

from __future__ import annotations

import numpy as np

from scaling_orchestrator.analysis.design.select import Runs, flops_label
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.choice import AUTO, MIN_POINTS_PER_CONSTANT
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM
from scaling_orchestrator.analysis.laws.registry import forms as registered_forms

MAX_CONSTANTS = 5
MIN_SLICE = 3      # runs the scored slice holds at least
MARGIN = 0.2       # another form wins only with an error below (1 - MARGIN) x the default's


def auto_forms() -> tuple[str, ...]:
    """The forms `--law auto` scores during selection (module doc), the default first."""
    return tuple(n for n, f in registered_forms().items()
                 if not f.required_columns and len(f.constants) <= MAX_CONSTANTS)


def held_out_error(form, runs: Runs, fit_rows, test_rows) -> float | None:
    """Mean |relative error| of loss on test_rows of the form fitted on fit_rows; None when it
    cannot be fitted or its forecast is not finite."""
    need = MIN_POINTS_PER_CONSTANT * len(form.constants)
    if fit_rows.sum() < need:
        return None
    N, D, L = runs.params, runs.tokens, runs.loss
    try:
        law = form.fit(N[fit_rows], D[fit_rows], L[fit_rows])
    except (NotFittable, ValueError):
        return None
    with np.errstate(all="ignore"):
        predicted = np.asarray(law.predict(N[test_rows], D[test_rows]), float)
    if not np.all(np.isfinite(predicted)):
        return None
    return float(np.mean(np.abs(predicted / L[test_rows] - 1)))


def held_out_slice(runs: Runs) -> np.ndarray:
    """The largest budgets, as many as hold MIN_SLICE runs (all but the smallest budget at most)."""
    budgets = np.unique(runs.budget_flops)[::-1]
    top = np.zeros(len(runs), bool)
    for budget in budgets[:-1]:
        top |= runs.budget_flops == budget
        if top.sum() >= MIN_SLICE:
            break
    return top


def pick_law(runs: Runs, law: str = AUTO, forms: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(form name, why): law itself when named; for "auto" the form whose fit on the other runs
    forecasts the largest budgets' best (module doc), the default form when none can be
    scored."""
    if law != AUTO:
        return law, "given"
    forms = auto_forms() if forms is None else forms
    top = held_out_slice(runs)
    if not top.any():
        return DEFAULT_FORM, "default: one budget only, nothing to extrapolate to"
    errors = {name: held_out_error(registered_forms()[name], runs, ~top, top) for name in forms}
    scored = {name: e for name, e in errors.items() if e is not None}
    lowest = flops_label(float(runs.budget_flops[top].min()))
    slice_ = f"the largest budgets ({int(top.sum())} runs from {lowest} FLOPs)"
    if not scored:
        return DEFAULT_FORM, f"default: no form could be scored on {slice_}"
    best = min(scored, key=scored.get)
    if DEFAULT_FORM in scored and scored[best] > (1 - MARGIN) * scored[DEFAULT_FORM]:
        best = DEFAULT_FORM
    said = ", ".join(f"{name} {e:.2%}" for name, e in scored.items())
    return best, (f"auto: lowest mean |relative error| of loss on {slice_} fitted on the other "
                  f"{int((~top).sum())} ({said}; {DEFAULT_FORM} unless another misses "
                  f"{MARGIN:.0%} less)")
