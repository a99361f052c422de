"""Which law a prediction uses, and the loss it gives: `FitResult.predict` and `scaling predict`.

method "headline" (the default) predicts with the headline method's law where that method has
one: the parametric law L(N, D), or IsoFLOP's / the envelope's loss frontier
L*(C) = E + A C^-alpha through that method's own minima, at C = each point's training FLOPs.
The frontier is the loss of a compute-optimal run at that budget (what the headline's
"expected loss" quotes), not of the point's own split of C into N and D, and it has no
interval. A headline method without a frontier falls back to the parametric law, and
`prediction_law` says so. E.g. a headline from IsoFLOP at 3e21 FLOPs quotes L*(3e21); predict
at that N*, D* with --method headline gives the same number, with --method parametric the
parametric law's L(N*, D*), which can differ by a few percent.
"""

from __future__ import annotations

import numpy as np

from scaling_orchestrator.analysis.laws.choice import UNIQUE_TOKENS, not_finite
from scaling_orchestrator.analysis.laws.optimum import per_token
from scaling_orchestrator.analysis.laws.registry import Form

HEADLINE = "headline"
FRONTIER_METHODS = ("isoflop", "envelope")
PREDICT_METHODS = (HEADLINE, "parametric", *FRONTIER_METHODS)
PERCENTILES = (2.5, 97.5)


def prediction_method(result, method: str = HEADLINE) -> str:
    """The method whose law predicts for `method`: "headline" resolves to the headline's method
    when it has a loss frontier (or is parametric), else "parametric". ValueError for a method
    that is not allowed or, asked by name, has no frontier."""
    if method not in PREDICT_METHODS:
        raise ValueError(f"method={method!r}: allowed {', '.join(PREDICT_METHODS)}")
    if method == HEADLINE:
        head = result.headline_method
        return head if head == "parametric" or result.loss_frontiers.get(head) is not None else "parametric"
    if method != "parametric" and result.loss_frontiers.get(method) is None:
        section = getattr(result, method)
        why = section.reason if not section.fittable else "its loss frontier could not be fitted"
        raise ValueError(f"{method}: no loss frontier to predict with ({why})")
    return method


def prediction_law(result, method: str = HEADLINE) -> str:
    """The law `result.predict(..., method=method)` uses, in words, for the line that reports
    the predictions: 'the isoflop loss frontier L*(C) = 1.69 + 2.1e+02 C^-0.153 (the
    headline's method) at each point's FLOPs ...'."""
    used = prediction_method(result, method)
    head = result.headline_method
    role = " (the headline's method)" if used == head else ""
    if used == "parametric":
        if method == HEADLINE and head != "parametric":
            role = f" (the headline's {head} has no loss frontier)"
        form = getattr(result.parametric, "form", None)
        name = f"parametric {form.name} law" if form is not None else "parametric law"
        return f"the {name} L(N, D){role}"
    f = result.loss_frontiers[used]
    return (f"the {used} loss frontier L*(C) = {f.E:.4g} + {f.A:.4g} C^-{f.alpha:.4g}{role} at each "
            "point's FLOPs: the loss of a compute-optimal run of that budget, no interval")


def predict_with(result, N, D, U=None, *, interval: bool = False, method: str = HEADLINE, C=None):
    """FitResult.predict: the loss at N, D (U, C as there) by prediction_method's law."""
    used = prediction_method(result, method)
    if used == "parametric":
        par = result.parametric
        if not par.fittable:
            raise ValueError(f"parametric: not fittable ({par.reason}); predict needs the parametric law")
        problem = not_finite(par.form, par.law)
        if problem:
            raise ValueError(f"parametric: the {par.form.name} law cannot predict: {problem}")
        samples = None if par.samples is None else par.form.finite_samples(par.samples)
        return predict_loss(par.law, par.form, samples, N, D, U, interval=interval)
    N, D = np.asarray(N, float), np.asarray(D, float)
    with np.errstate(all="ignore"):
        flops = per_token(result.flops_per_token, N) * D if C is None else np.asarray(C, float)
        loss = np.asarray(result.loss_frontiers[used].predict(flops), float)
        loss = np.where((N > 0) & (D > 0) & (flops > 0), loss, np.nan)
    return (loss, None, None) if interval else loss


def predict_loss(law, form: Form, samples, N, D, U=None, *, interval: bool = False):
    """Loss at (N, D[, U]); with interval=True, (loss, lo, hi) from the bootstrap rows (their
    2.5th and 97.5th percentiles; lo and hi are None without them)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    U = None if U is None else np.asarray(U, float)
    if UNIQUE_TOKENS in form.required_columns and U is None:
        raise ValueError(f"unique_tokens: the {form.name} law needs U for each point")
    with np.errstate(all="ignore"):
        loss = np.asarray(law.predict(N, D, U), float)
        if not interval:
            return loss
        if samples is None or not len(samples):
            return loss, None, None
        P = {k: np.asarray(col)[:, None] for k, col in zip(form.constants, np.asarray(samples, float).T)}
        each = np.asarray(form.predict_values(P, N.reshape(-1)[None], D.reshape(-1)[None],
                                              None if U is None else U.reshape(-1)[None]), float)
        lo, hi = (q.reshape(N.shape) for q in np.nanpercentile(each, PERCENTILES, axis=0))
    return loss, lo, hi
