"""The parametric law forms a fit can use, behind one seam.

A form (analysis/laws/forms/, one class per file) says how to fit L(N, D[, U]) to points and
how to bootstrap it; the fitted law answers params() (its constants as a dict),
predict(N, D[, U]) (loss, nats/token) and compute_optimal(C, flops_per_token) -> (N*, D*, L*).
Everything downstream (back-test, recommendations, report) talks to the law through those
three and to the form through the `LawForm` interface
(scaling_orchestrator.analysis.laws.forms.base.Form): name, formula, citation, constants,
required_columns, fit, bootstrap, exponents, no_optimum, exponent_ci, optimal_interval, band,
finite_samples.

Adding a form is ONE new class: in a new file under analysis/laws/forms/ (this module imports
every module there) or in a user's own module. Defining a Form subclass registers it, and
`forms()` / `law_form(name)` read the registry when called, so a form defined after this module
was imported is found by name (`scaling_orchestrator.analysis.fit(..., law="myform")`). Built in:
  chinchilla        E + A/N^alpha + B/D^beta               Hoffmann et al. 2022 (the default)
  data_constrained  Chinchilla in effective N', D'         Muennighoff et al. 2023 (needs U)
  farseer           exp(s N^q + S) + exp(B N^b + Q) D^-beta(N)   Li et al. 2025
  kaplan            [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D  Kaplan et al. 2020
Curve laws (fitted to every evaluation under its LR schedule, analysis/laws/curves/) are listed
by curve_forms(): lr_annealing (Tissue et al. 2024), multi_power (Luo et al. 2025).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

import scaling_orchestrator.analysis.laws.forms
from scaling_orchestrator.analysis.errors import NotFittable, Unfit
from scaling_orchestrator.analysis.laws.curves.forms import CurveForm
from scaling_orchestrator.analysis.laws.forms.base import Form
from scaling_orchestrator.analysis.numerics import number

for _module in pkgutil.iter_modules(scaling_orchestrator.analysis.laws.forms.__path__):
    importlib.import_module(f"scaling_orchestrator.analysis.laws.forms.{_module.name}")

LawForm = Form
DEFAULT_FORM = "chinchilla"


def forms() -> dict[str, Form]:
    """Every form defined so far, by name: the default (chinchilla) first, then by name."""
    return {name: Form.registry[name] for name in sorted(Form.registry, key=lambda n: (n != DEFAULT_FORM, n))}


def curve_forms() -> dict[str, type]:
    """The schedule-aware loss-curve laws L(N, t; eta) (analysis/laws/curves/forms.py:
    lr_annealing, multi_power), by name: fitted to whole curves, not to final points."""
    return dict(CurveForm.registry)


class Law(Protocol):
    """What a fitted parametric law answers."""

    def params(self) -> dict: ...

    def predict(self, N, D, U=None) -> np.ndarray: ...

    def compute_optimal(self, C, flops_per_token: Callable | None = None): ...


def law_form(name: str) -> Form:
    if name not in Form.registry:
        raise ValueError(f"law={name!r}: allowed forms: {', '.join(map(repr, forms()))}")
    return Form.registry[name]


def law_from_dict(fitted: dict) -> Law:
    """The law a `scaling fit --json` "parametric" section describes (ParametricResult.to_dict:
    "law" names the form, chinchilla when absent; the form's constants by name), ready to
    predict and compute_optimal. JSON writes inf as null: a null constant that the form allows
    to be infinite (R_D*, R_N*) reads back as inf."""
    form = law_form(fitted.get("law") or DEFAULT_FORM)
    missing = [k for k in form.constants if k not in fitted]
    if missing:
        raise ValueError(f"parametric: {', '.join(missing)} missing for the {form.name} law")
    values = {
        k: (
            np.inf
            if fitted[k] is None and k in form.may_be_infinite
            else float("nan")
            if fitted[k] is None
            else float(fitted[k])
        )
        for k in form.constants
    }
    meta = dict(
        objective=float(fitted.get("objective") or 0.0),
        n_points=int(fitted.get("n_points") or 0),
        converged=bool(fitted.get("converged", True)),
    )
    return form.fitted(values, **meta)


@dataclass(frozen=True)
class ParametricResult:
    """The fitted law, its 95% intervals (bootstrap over runs) and the bootstrap rows."""

    law: Law
    form: Form
    ci95: dict = field(default_factory=dict)  # constant or exponent -> [lo, hi]
    samples: np.ndarray | None = None  # bootstrap rows, the form's constants
    fittable: ClassVar[bool] = True

    @property
    def a(self) -> float | None:
        return self.form.exponents(self.law)[0]

    @property
    def b(self) -> float | None:
        return self.form.exponents(self.law)[1]

    @property
    def exponent_keys(self) -> dict:
        """{"a": a, "b": b} of N* ~ C^a, D* ~ C^b, less any name the form uses for a constant
        (Farseer's a and b are constants: written over them, every saved Farseer law read
        back with a = b = NaN)."""
        return {k: v for k, v in (("a", self.a), ("b", self.b)) if k not in self.form.constants}

    @staticmethod
    def from_dict(d: dict) -> ParametricResult:
        """The law from its constants, its 95% intervals, and its bootstrap rows (null -> inf
        where the form allows it, NaN otherwise; None when the fit had no bootstrap)."""
        form = law_form(d.get("law") or DEFAULT_FORM)
        rows = d.get("samples")
        samples = None
        if rows:
            infinite_ok = [c in form.may_be_infinite for c in form.constants]
            samples = np.array([[np.inf if v is None and ok else number(v) for v, ok in zip(row, infinite_ok)]
                                for row in rows], dtype=float)
        ci95 = {k: list(v) for k, v in (d.get("ci95") or {}).items()}
        return ParametricResult(law_from_dict(d), form, ci95, samples)

    def to_dict(self) -> dict:
        """The law's constants, a, b, ci95 and "samples": every finite bootstrap row (the
        form's constants in order), what `scaling predict` takes its intervals from."""
        samples = [] if self.samples is None else self.form.finite_samples(self.samples).tolist()
        return {
            "fittable": True,
            "law": self.form.name,
            **self.law.params(),
            **self.exponent_keys,
            "ci95": {k: list(v) for k, v in self.ci95.items()},
            "samples": samples,
        }


def fit_law(
    form: Form, N, D, L, runs, *, n_bootstrap: int, seed: int, flops_per_token, U=None, law=None
) -> ParametricResult | Unfit:
    """Fit the form to final points and, when n_bootstrap > 0, bootstrap it over runs.
    U: unique tokens per point, for forms whose required_columns name "unique_tokens".
    law: the form already fitted to these points (`--law auto`'s refit), bootstrapped as is."""
    return fit_law_later(form, N, D, L, runs, n_bootstrap=n_bootstrap, seed=seed,
                         flops_per_token=flops_per_token, U=U, law=law)()


def fit_law_later(
    form: Form, N, D, L, runs, *, n_bootstrap: int, seed: int, flops_per_token, U=None, law=None,
    background: bool = False,
):
    """finish() -> fit_law's result; with background=True its bootstrap's refits run in a
    forked child until finish() (laws/bootstrap.py, bootstrap_later)."""
    try:
        law = form.fit(N, D, L, U) if law is None else law
    except (NotFittable, ValueError) as exc:
        unfit = Unfit.from_error(exc)
        return lambda: unfit
    if n_bootstrap <= 0:
        return lambda: ParametricResult(law, form)
    boot = form.bootstrap_later(N, D, L, runs, U, n_resamples=n_bootstrap, seed=seed, fit=law,
                                flops_per_token=flops_per_token, background=background)

    def finish() -> ParametricResult:
        done = boot()
        ci95 = {k: list(v) for k, v in done["ci95"].items()}
        ci95.update(form.exponent_ci(done.get("samples")))
        return ParametricResult(law, form, ci95, done["samples"])

    return finish
