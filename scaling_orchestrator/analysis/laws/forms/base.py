"""What every parametric law form is, and the fitted law it returns.

A form is one subclass of `Form`, in a module of analysis/laws/forms/ or in a user's own
module: its name, formula, citation, fitted constants (`constants`, reading order), the table
columns it needs beyond N, D, L (`required_columns`), a start grid, its log-loss with the
gradient in its inner coordinates, the maps between inner and reported constants, and predict.
Defining the subclass registers it (`Form.registry`, read through
scaling_orchestrator.analysis.laws.registry.forms). Fit (the one engine,
scaling_orchestrator.analysis.laws.engine), bootstrap, compute-optimal allocation and intervals
come from here. A form overrides `optimum_6nd` where Eq. 4-style closed forms exist,
`exponents` where N* ~ C^a, D* ~ C^b hold exactly, and may supply a faster exact `objective`,
its own fitted-law record (`fitted`, `law`) and the starts a bootstrap resample refits from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from scaling_orchestrator.analysis.laws.bootstrap import bootstrap_form, bootstrap_later, interval
from scaling_orchestrator.analysis.laws.engine import (
    KEEP_STARTS,
    REFINE_KEEP,
    Columns,
    Objective,
    Optimum,
    fit_from_starts,
    thin,
)
from scaling_orchestrator.analysis.laws.optimum import search_optimum

CONVERGED_GRADIENT = 1e-8  # max |gradient| of the summed Huber loss at a converged fit
BOOTSTRAP_GRID_STARTS = 8  # grid starts per bootstrap resample, besides the fit's optimum


class Form:
    """One parametric law L(N, D[, U]); subclasses fill in the class attributes and methods."""

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    constants: ClassVar[tuple[str, ...]] = ()
    required_columns: ClassVar[tuple[str, ...]] = ()
    may_be_infinite: ClassVar[tuple[str, ...]] = ()  # constants where +inf is a meaning
    loss_floor: ClassVar[str] = ""  # the constant that is the loss floor
    # exponents of power-law terms whose published values are 0.3-0.6 (Chinchilla's alpha,
    # beta): one above 3 means a term vanished within the data
    term_exponents: ClassVar[tuple[str, ...]] = ()
    keep_starts: ClassVar[int] = KEEP_STARTS  # starts kept after the screen
    refine_keep: ClassVar[int] = REFINE_KEEP  # starts run to convergence after the refine cut
    bootstrap_grid_starts: ClassVar[int] = BOOTSTRAP_GRID_STARTS
    # The back-test's fit without its held-out runs may start from the law on every run and a
    # few grid starts instead of the whole screened grid (laws/choice.py NEAR_GRID_STARTS):
    # only where that was checked to reach the screened fit's optimum.
    near_starts: ClassVar[bool] = False
    registry: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            Form.registry[cls.name] = cls()

    def __repr__(self) -> str:
        return f"<law form {self.name!r}: {self.formula}>"

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.constants

    # ---- what a form supplies ------------------------------------------------------------
    def starts(self, cols: Columns) -> np.ndarray:
        """The start grid, rows of inner coordinates."""
        raise NotImplementedError

    def log_loss(self, z, cols: Columns, jac: bool = True):
        """(log L-hat (k, n), [d log L-hat / d z_j] or None) for rows z (k, p)."""
        raise NotImplementedError

    def to_outer(self, z, frame) -> np.ndarray:
        """Inner rows (k, p) -> reported constants (k, p) in `constants` order."""
        raise NotImplementedError

    def to_inner(self, x, frame) -> np.ndarray:
        raise NotImplementedError

    def predict_values(self, P: dict, N, D, U=None) -> np.ndarray:
        """Loss (nats/token) from constants P (floats or arrays broadcasting with N, D)."""
        raise NotImplementedError

    def optimum_6nd(self, P: dict, C):
        """(N*, D*) in closed form under C = 6ND, or None where the form has none."""
        return None

    def exponent_rows(self, P: dict):
        """(a, b) of N* ~ C^a, D* ~ C^b from constants (arrays allowed); None: not a power law."""
        return None

    def no_optimum(self, law) -> str:
        """Why the fitted law has no compute-optimal allocation ("" when it has one)."""
        return ""

    def frozen(self, cols: Columns, law=None) -> tuple[int, ...]:
        """Inner parameters held at their start because this table (or, given the fitted
        law, the fit) cannot identify them."""
        return ()

    def objective(self, cols: Columns, delta: float = 1e-3, frozen=()):
        """The summed Huber loss on cols (value_grad, huber_terms, batch_fun), from log_loss."""
        return Objective(self, cols, delta, frozen)

    def to_free(self, z, frame) -> np.ndarray:
        """Inner rows -> constants that no frame depends on, which carry the screen's starts
        from its subsample to the full data (the reported constants unless a form says)."""
        return self.to_outer(z, frame)

    def from_free(self, x, frame) -> np.ndarray:
        return self.to_inner(x, frame)

    def refit_starts(self, law, cols: Columns) -> np.ndarray:
        """Inner rows every bootstrap resample is refitted from: the fitted law's optimum."""
        return self.to_inner(np.array([[law.values[k] for k in self.constants]]), cols.frame)

    def fitted(self, values: dict, **meta) -> FittedLaw:
        """The fitted law with these constants; meta: objective, n_points, converged, ..."""
        return FittedLaw(self, values, **meta)

    # ---- shared --------------------------------------------------------------------------
    def columns(self, N, D, L, U=None) -> Columns:
        if "unique_tokens" in self.required_columns and U is None:
            raise ValueError(
                f"unique_tokens: the {self.name} law needs a unique-tokens "
                "column U (tokens / epochs); none was given"
            )
        cols = Columns(N, D, L, U if "unique_tokens" in self.required_columns else None)
        if len(cols) < len(self.constants):
            raise ValueError(
                f"N: {len(cols)} points; the {self.name} law has "
                f"{len(self.constants)} constants and needs at least that many"
            )
        return cols

    def fit(
        self,
        N,
        D,
        L,
        U=None,
        *,
        delta: float = 1e-3,
        n_starts: int | None = None,
        weights=None,
        threads: int = 2,
        screen: bool = True,
    ):
        """Fit to points (N params, D tokens, L nats/token[, U unique tokens]).
        n_starts: an even subset of the start grid (tests); weights: per-point multiplicities."""
        cols = self.columns(N, D, L, U)
        found = fit_from_starts(
            self,
            cols,
            lambda data: thin(self.starts(data), n_starts),
            delta=delta,
            weights=weights,
            threads=threads,
            screen=screen,
            frozen=self.frozen(cols),
        )
        return self.law(found, cols, delta)

    def law(self, found: Optimum, cols: Columns, delta: float, notes=()):
        """The fitted law at the engine's optimum."""
        outer = self.to_outer(found.z[None], cols.frame)[0]
        return self.fitted(
            dict(zip(self.constants, (float(x) for x in outer))),
            objective=float(found.objective),
            n_points=len(cols),
            converged=converged(found),
            delta=delta,
            n_starts=int(found.n_starts),
            notes=tuple(notes),
        )

    def bootstrap(self, N, D, L, runs, U=None, **options) -> dict:
        """Run-bootstrap intervals: scaling_orchestrator.analysis.laws.bootstrap.bootstrap_form's
        options and result."""
        return bootstrap_form(self, N, D, L, runs, U, **options)

    def bootstrap_later(self, N, D, L, runs, U=None, **options):
        """finish() -> bootstrap's result, its refits running meanwhile with background=True
        (laws/bootstrap.py, bootstrap_later)."""
        return bootstrap_later(self, N, D, L, runs, U, **options)

    def optimum(self, P: dict, C, flops_per_token=None, U=None):
        """(N*, D*) per row of C (r,); P's arrays, if any, have one value per row."""
        if flops_per_token is None and U is None:
            closed = self.optimum_6nd(P, C)
            if closed is not None:
                return closed
        columns = {k: (np.asarray(v)[..., None] if np.ndim(v) else v) for k, v in P.items()}
        return search_optimum(lambda n, d: self.predict_values(columns, n, d, U), C, flops_per_token)

    def exponents(self, law) -> tuple[float | None, float | None]:
        rows = self.exponent_rows(law.values)
        if rows is None:
            return None, None
        a, b = (float(x) for x in rows)
        return (a, b) if np.isfinite(a) and np.isfinite(b) else (None, None)

    def exponent_ci(self, samples) -> dict:
        s = np.asarray(samples if samples is not None else [], float)
        if s.ndim != 2 or len(s) < 10:
            return {}
        rows = self.exponent_rows(dict(zip(self.constants, s.T)))
        if rows is None:
            return {}
        a, b = (np.asarray(x, float) for x in rows)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 10:
            return {}
        return {"a": list(np.percentile(a[ok], [2.5, 97.5])), "b": list(np.percentile(b[ok], [2.5, 97.5]))}

    def finite_samples(self, samples) -> np.ndarray:
        """Bootstrap rows whose constants are all finite (+inf allowed in may_be_infinite)."""
        s = np.asarray(samples, dtype=float)
        infinite_ok = np.array([c in self.may_be_infinite for c in self.constants])
        ok = np.isfinite(s) | (infinite_ok & (s == np.inf))
        return s[np.all(ok, axis=1)]

    def optimal_interval(self, samples, flops: float, flops_per_token) -> dict:
        """95% intervals of (N*, D*, L*) at `flops` over bootstrap rows, all rows at once."""
        s = np.asarray(samples, dtype=float)
        P = dict(zip(self.constants, s.T))
        with np.errstate(all="ignore"):
            n_opt, d_opt = self.optimum(P, np.full(len(s), float(flops)), flops_per_token)
            loss = self.predict_values(P, n_opt, d_opt)
        return {
            "flops": flops,
            "params_ci": interval(n_opt),
            "tokens_ci": interval(d_opt),
            "loss_ci": interval(loss),
        }

    def band(self, samples, flops: float) -> dict:
        """N*, D* 95% band at `flops` under 6ND, for plots."""
        ci = self.optimal_interval(self.finite_samples(samples), flops, None)
        return {"params_ci": ci["params_ci"], "tokens_ci": ci["tokens_ci"]}


def allocation_exponents(n_exponent, d_exponent):
    """(a, b) of N* ~ C^a, D* ~ C^b for a law with additive N and D terms of exponents
    n_exponent and d_exponent (Chinchilla Eq. 4: a = beta/(alpha+beta); Epoch's alpha 0.347,
    beta 0.367 give a = 0.514); NaN where the exponents do not sum to a positive number."""
    n, d = np.asarray(n_exponent, float), np.asarray(d_exponent, float)
    total = n + d
    with np.errstate(all="ignore"):
        return np.where(total > 0, d / total, np.nan), np.where(total > 0, n / total, np.nan)


def converged(found: Optimum) -> bool:
    """Whether the fit stopped at a minimum: max |gradient| <= CONVERGED_GRADIENT, finite loss."""
    return bool(found.max_gradient <= CONVERGED_GRADIENT and np.isfinite(found.objective))


@dataclass(frozen=True)
class FittedLaw:
    """A fitted form: its constants (`values`, also readable as attributes), the summed Huber
    loss at the optimum, and what the fit could not identify (`notes`)."""

    form: Form = field(repr=False, compare=False)
    values: dict
    objective: float
    n_points: int
    converged: bool
    delta: float = 1e-3
    n_starts: int = 0
    notes: tuple[str, ...] = ()

    def __getattr__(self, name):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def exponents(self) -> tuple[float | None, float | None]:
        """(a, b) of N* ~ C^a, D* ~ C^b under 6ND; (None, None) where the form has none."""
        return self.form.exponents(self)

    def predict(self, N, D, U=None) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.form.predict_values(self.values, N, D, None if U is None else np.asarray(U, dtype=float))

    def compute_optimal(self, C, flops_per_token: Callable | None = None, unique_tokens=None):
        """(N*, D*, L*) minimising L at training compute C FLOPs (C = flops_per_token(N) D,
        6ND when None); unique_tokens: the unique data available (repeated past it)."""
        C = np.asarray(C, dtype=float)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError(f"compute_optimal: C={C} must be finite and > 0 FLOPs")
        n_opt, d_opt = self.form.optimum(self.values, C.reshape(-1), flops_per_token, unique_tokens)
        with np.errstate(all="ignore"):
            loss = self.form.predict_values(self.values, n_opt, d_opt, unique_tokens)
        if C.ndim == 0:
            return float(n_opt[0]), float(d_opt[0]), float(loss[0])
        return n_opt.reshape(C.shape), d_opt.reshape(C.shape), loss.reshape(C.shape)

    def params(self) -> dict:
        return {
            **self.values,
            "objective": self.objective,
            "n_points": self.n_points,
            "converged": self.converged,
            "delta": self.delta,
            "n_starts": self.n_starts,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        constants = ", ".join(f"{k} = {v:.5g}" for k, v in self.values.items())
        a, b = self.form.exponents(self)
        lines = [f"{self.form.name}: {self.form.formula}", f"  {constants}"]
        if a is not None:
            lines.append(f"  N* ~ C^{a:.3f}, D* ~ C^{b:.3f}  (C = 6ND)")
        lines.append(
            f"  summed Huber(delta={self.delta:g}) = {self.objective:.6g} over "
            f"{self.n_points} points, {self.n_starts} starts, "
            f"converged={self.converged}"
        )
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])
