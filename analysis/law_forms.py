"""The parametric law forms a fit can use, behind one seam.

A form says how to fit L(N, D) to points and how to bootstrap it; the fitted law object
answers params() (its constants as a dict), predict(N, D) (loss, nats/token) and
compute_optimal(C, flops_per_token) -> (N*, D*, L*). Everything downstream (back-test,
recommendations, report) talks to the law through those three, so a new form is one entry in
FORMS. Today there is one: "chinchilla", L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022
Eq. 2), fitted as Besiroglu et al. 2024 replicate it (analysis/parametric.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol

import numpy as np

from analysis.bootstrap import bootstrap_parametric, finite_samples, optimal_interval
from analysis.errors import NotFittable, Unfit
from analysis.parametric import PARAM_NAMES, fit_parametric, optimal_6nd


class Law(Protocol):
    """What a fitted parametric law answers."""

    def params(self) -> dict: ...

    def predict(self, N, D) -> np.ndarray: ...

    def compute_optimal(self, C, flops_per_token: Callable | None = None): ...


def chinchilla_exponents(law) -> tuple[float | None, float | None]:
    """Chinchilla Eq. 4: N* ~ C^a, D* ~ C^b with a = beta/(alpha+beta), b = alpha/(alpha+beta);
    Epoch's fit (alpha 0.347, beta 0.367) gives a = 0.514. None when alpha + beta <= 0."""
    total = law.alpha + law.beta
    return (law.beta / total, law.alpha / total) if total > 0 else (None, None)


def chinchilla_no_optimum(law) -> str:
    """Why the law has no compute-optimal allocation ("" when it has one): Eq. 4 divides by
    alpha and beta."""
    if law.alpha > 0 and law.beta > 0:
        return ""
    return (f"fitted alpha = {law.alpha:.3g}, beta = {law.beta:.3g}: with an exponent at 0 "
            "the law has no compute-optimal trade-off")


def chinchilla_exponent_ci(samples) -> dict:
    """a, b intervals from bootstrap rows (E, A, B, alpha, beta)."""
    s = np.asarray(samples if samples is not None else [], float)
    if s.ndim != 2 or s.shape[1] < 5 or len(s) < 10:
        return {}
    alpha, beta = s[:, 3], s[:, 4]
    ok = np.isfinite(alpha + beta) & (alpha + beta > 0)
    a = beta[ok] / (alpha[ok] + beta[ok])
    return {"a": list(np.percentile(a, [2.5, 97.5])), "b": list(np.percentile(1 - a, [2.5, 97.5]))}


def chinchilla_band(samples, flops: float) -> dict:
    """N*, D* 95% band at `flops` under 6ND (Eq. 4 vectorised over every bootstrap row)."""
    E, A, B, alpha, beta = np.asarray(samples, float).T
    n_s, d_s = optimal_6nd(A, B, alpha, beta, flops)
    return {"params_ci": list(np.nanpercentile(n_s, [2.5, 97.5])),
            "tokens_ci": list(np.nanpercentile(d_s, [2.5, 97.5]))}


@dataclass(frozen=True)
class LawForm:
    """One parametric form: how to fit it, bootstrap it and read intervals off the samples."""

    name: str
    formula: str
    constants: tuple[str, ...]       # the fitted constants of params(), in reading order
    fit: Callable                    # (N, D, L) -> law
    bootstrap: Callable              # bootstrap_parametric's signature
    exponents: Callable              # law -> (a, b): N* ~ C^a, D* ~ C^b
    no_optimum: Callable             # law -> why it has no compute optimum, "" when it has one
    exponent_ci: Callable            # samples -> {"a": [lo, hi], "b": [lo, hi]}
    optimal_interval: Callable       # (finite samples, C, flops_per_token) -> {"params_ci", ...}
    band: Callable                   # (samples, C) -> {"params_ci", "tokens_ci"} for plots
    finite_samples: Callable


FORMS = {"chinchilla": LawForm(
    "chinchilla", "L(N, D) = E + A/N^alpha + B/D^beta", PARAM_NAMES, fit_parametric,
    bootstrap_parametric, chinchilla_exponents, chinchilla_no_optimum, chinchilla_exponent_ci,
    optimal_interval, chinchilla_band, finite_samples)}


def law_form(name: str) -> LawForm:
    if name not in FORMS:
        raise ValueError(f"law={name!r}: allowed forms: {', '.join(map(repr, FORMS))}")
    return FORMS[name]


@dataclass(frozen=True)
class ParametricResult:
    """The fitted law, its 95% intervals (bootstrap over runs) and the bootstrap rows."""

    law: Law
    form: LawForm
    ci95: dict = field(default_factory=dict)   # constant or exponent -> [lo, hi]
    samples: np.ndarray | None = None          # bootstrap rows, the form's constants
    fittable: ClassVar[bool] = True

    @property
    def a(self) -> float | None:
        return self.form.exponents(self.law)[0]

    @property
    def b(self) -> float | None:
        return self.form.exponents(self.law)[1]

    def to_dict(self) -> dict:
        return {"fittable": True, **self.law.params(), "a": self.a, "b": self.b,
                "ci95": {k: list(v) for k, v in self.ci95.items()}}


def fit_law(form: LawForm, N, D, L, runs, *, n_bootstrap: int, seed: int,
            flops_per_token) -> ParametricResult | Unfit:
    """Fit the form to final points and, when n_bootstrap > 0, bootstrap it over runs."""
    try:
        law = form.fit(N, D, L)
    except (NotFittable, ValueError) as exc:
        return Unfit.from_error(exc)
    if n_bootstrap <= 0:
        return ParametricResult(law, form)
    boot = form.bootstrap(N, D, L, runs, n_resamples=n_bootstrap, seed=seed, fit=law,
                          flops_per_token=flops_per_token)
    ci95 = {k: list(v) for k, v in boot["ci95"].items()}
    ci95.update(form.exponent_ci(boot.get("samples")))
    return ParametricResult(law, form, ci95, boot["samples"])
