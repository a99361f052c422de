"""`scaling select --law auto`: which law form each selection round plans with.

The rule of `--law auto` in `scaling fit` (scaling_orchestrator.analysis.laws.choice): each form
is fitted on the runs chosen so far less the largest budget among them and scored on that
budget's runs by mean |relative error| of loss; the lowest wins. A round refits and
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
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, FORMS

MAX_CONSTANTS = 5


def auto_forms() -> tuple[str, ...]:
    """The forms `--law auto` scores during selection (module doc), the default first."""
    return tuple(n for n, f in FORMS.items()
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


def pick_law(runs: Runs, law: str = AUTO, forms: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(form name, why): law itself when named; for "auto" the form whose fit on all but the
    largest budget's runs forecasts that budget best, the default form when none can be
    scored."""
    if law != AUTO:
        return law, "given"
    forms = auto_forms() if forms is None else forms
    top = runs.budget_flops == runs.budget_flops.max()
    if top.all():
        return DEFAULT_FORM, "default: one budget only, nothing to extrapolate to"
    errors = {name: held_out_error(FORMS[name], runs, ~top, top) for name in forms}
    scored = {name: e for name, e in errors.items() if e is not None}
    budget = flops_label(float(runs.budget_flops.max()))
    if not scored:
        return DEFAULT_FORM, f"default: no form could be scored on the largest budget ({budget})"
    best = min(scored, key=scored.get)
    said = ", ".join(f"{name} {e:.2%}" for name, e in scored.items())
    return best, (f"auto: lowest mean |relative error| of loss on the largest budget ({budget} "
                  f"FLOPs, {int(top.sum())} runs) fitted on the other {int((~top).sum())}: {said}")
