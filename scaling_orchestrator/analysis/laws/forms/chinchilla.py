"""Chinchilla's form, L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq. 2).

Fitted by the shared engine (scaling_orchestrator.analysis.laws.engine) as Chinchilla section
3.3 and its Besiroglu et al. 2024 replication fit it: minimise the SUM over points of
Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L), delta = 1e-3, with A = exp(a),
B = exp(b), E = exp(e), by L-BFGS from the 4500-start grid alpha, beta in {0, .5, .., 2}, e in
{-1, -.5, .., 1}, a, b in {0, 5, .., 25}. A mean instead of a sum makes L-BFGS stop at its
start point (the gradient is 240x smaller, under scipy's default tolerances). The 300 starts
the screen keeps all run to convergence (no refine cut), the screen hands them over in
(a, b, e, alpha, beta), and the objective is the cache-blocked one of
scaling_orchestrator.analysis.laws.forms.chinchilla_objective. On Epoch's 240 points:
E = 1.8172, A = 477.8, B = 2143, alpha = 0.3473, beta = 0.3672, summed Huber 1.01827e-3
(reference_fits.json). The bootstrap refits each resample from the optimum and the runner-up
basins the fit found, without grid starts (scaling_orchestrator.analysis.laws.bootstrap).

The fitted law is a `ParametricFit` (a law read back from JSON or built by hand is one too):
its compute-optimal allocation is Eq. 4 in closed form under 6ND.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scaling_orchestrator.analysis.laws.bootstrap import interval
from scaling_orchestrator.analysis.laws.bounded import minimize_bounded
from scaling_orchestrator.analysis.laws.engine import KEEP_STARTS
from scaling_orchestrator.analysis.laws.forms.base import Form, allocation_exponents, converged
from scaling_orchestrator.analysis.laws.forms.chinchilla_objective import ChinchillaObjective

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class ParametricFit:
    """A fitted L(N, D) = E + A / N^alpha + B / D^beta (N parameters, D tokens, L nats/token)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float  # summed Huber loss on log L at the optimum
    n_points: int
    converged: bool
    delta: float = 1e-3
    n_starts: int = 0
    # Other local minima the fit's starts converged to, best first, rows (a, b, e, alpha,
    # beta) = (log A, log B, log E, alpha, beta): the bootstrap refits each resample from
    # these too (Chinchilla.refit_starts).
    runner_ups: tuple = field(default=(), compare=False, repr=False)

    def predict(self, N, D, U=None) -> np.ndarray:
        """Loss at N params, D tokens; U (unique tokens) is accepted for the law-form
        interface and ignored: this form counts every token as new."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    def compute_optimal(self, C, flops_per_token: Callable | None = None):
        """(N*, D*, L*) minimising L at training compute C FLOPs.

        Under C = 6 N D this is Chinchilla eq. 4: G = (alpha A / (beta B))^(1/(alpha+beta)),
        N* = G (C/6)^(beta/(alpha+beta)), D* = (C/6)^(alpha/(alpha+beta)) / G. With Epoch's fit
        at C = 5.76e23 (Chinchilla's budget): N* = 7.3e10, D* = 1.3e12, L* = 1.974. With
        flops_per_token(N) (e.g. the exact Appendix F count) D = C / flops_per_token(N),
        minimised over log N."""
        C = np.asarray(C, dtype=float)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError(f"compute_optimal: C={C} must be finite and > 0 FLOPs")
        if flops_per_token is None:
            n_opt, d_opt = optimal_6nd(self.A, self.B, self.alpha, self.beta, C)
        else:
            n_opt = np.vectorize(lambda c: self._numeric_n(c, flops_per_token))(C)
            d_opt = C / np.vectorize(flops_per_token, otypes=[float])(n_opt)
        loss = self.predict(n_opt, d_opt)
        if C.ndim == 0:
            return float(n_opt), float(d_opt), float(loss)
        return n_opt, d_opt, loss

    def _numeric_n(self, c: float, flops_per_token: Callable) -> float:
        return float(numeric_optimum(self.E, self.A, self.B, self.alpha, self.beta, c, flops_per_token)[0])

    @property
    def values(self) -> dict:
        """The constants by name, as FittedLaw.values."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def params(self) -> dict:
        return {
            "E": self.E,
            "A": self.A,
            "B": self.B,
            "alpha": self.alpha,
            "beta": self.beta,
            "objective": self.objective,
            "n_points": self.n_points,
            "converged": self.converged,
            "delta": self.delta,
            "n_starts": self.n_starts,
        }

    def summary(self) -> str:
        a_exp = self.beta / (self.alpha + self.beta)
        return (
            f"L(N, D) = {self.E:.4f} + {self.A:.4g} / N^{self.alpha:.4f} + "
            f"{self.B:.4g} / D^{self.beta:.4f}\n"
            f"N* ~ C^{a_exp:.3f}, D* ~ C^{1 - a_exp:.3f}  (C = 6ND)\n"
            f"summed Huber(delta={self.delta:g}) = {self.objective:.6g} over {self.n_points} "
            f"points, {self.n_starts} starts, converged={self.converged}"
        )


def numeric_optimum(E, A, B, alpha, beta, c: float, flops_per_token: Callable) -> np.ndarray:
    """N* per row of constants at c FLOPs: L(N, c / fpt(N)) minimised over log N by scipy's
    bounded Brent (xatol 1e-10; laws/bounded.py runs every row at once, each as scipy would),
    a factor 400 either side of the 6ND optimum, or 1 .. C/6 for a degenerate row (alpha or
    beta ~ 0, a bootstrap resample)."""
    E, A, B, alpha, beta = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (E, A, B, alpha, beta))
    fpt = np.vectorize(flops_per_token, otypes=[float])

    def loss(log_n, rows):
        n = np.exp(log_n)
        return E[rows] + A[rows] / n ** alpha[rows] + B[rows] / (c / fpt(n)) ** beta[rows]

    with np.errstate(all="ignore"):
        guess, _ = optimal_6nd(A, B, alpha, beta, c)
        ok = np.isfinite(guess) & (guess > 0)
        centre = np.log(np.where(ok, guess, 1.0))
    lo = np.where(ok, centre - 6.0, 0.0)
    hi = np.where(ok, centre + 6.0, float(np.log(max(c / 6.0, 10.0))))
    return np.exp(minimize_bounded(loss, lo, hi, xatol=1e-10))


def optimal_6nd(A, B, alpha, beta, C):
    """Chinchilla eq. 4 (vectorised over parameter arrays and C)."""
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = G * (C / 6.0) ** (beta / (alpha + beta))
    return n_opt, C / (6.0 * n_opt)


# Chinchilla's start grid (as in Besiroglu et al. 2024): 6 x 6 x 5 x 5 x 5 = 4500 starts,
# columns (a, b, e, alpha, beta).
CHINCHILLA_GRID = np.array(
    list(
        itertools.product(
            np.arange(0.0, 26.0, 5.0),
            np.arange(0.0, 26.0, 5.0),
            np.arange(-1.0, 1.01, 0.5),
            np.arange(0.0, 2.01, 0.5),
            np.arange(0.0, 2.01, 0.5),
        )
    )
)


class Chinchilla(Form):
    """L(N, D) = E + A/N^alpha + B/D^beta; N* ~ C^(beta/(alpha+beta)) under 6ND (Eq. 4).

    Inner coordinates (a', b', e, alpha', beta'): with u = (log N - mn) / sn, the term
    a - alpha log N equals a' - alpha' u where a' = a - alpha mn and alpha' = alpha sn: the
    same minimum, but a and alpha no longer move together (log N ~ 20 makes the raw Hessian
    condition number ~1e5)."""

    name = "chinchilla"
    formula = "L(N, D) = E + A/N^alpha + B/D^beta"
    citation = (
        "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, "
        "arXiv:2203.15556, eq. (2) and (4); fit as Besiroglu et al. 2024, "
        "arXiv:2404.10102"
    )
    constants = PARAM_NAMES
    loss_floor = "E"
    term_exponents = ("alpha", "beta")
    refine_keep = KEEP_STARTS
    bootstrap_grid_starts = 0
    near_starts = True

    def starts(self, cols):
        return self.from_free(CHINCHILLA_GRID, cols.frame)

    def objective(self, cols, delta=1e-3, frozen=()):
        return ChinchillaObjective(cols, delta, frozen)

    def log_loss(self, z, cols, jac=True):
        """LSE(a' - alpha' u, b' - beta' v, e) (what ChinchillaObjective computes, blocked)."""
        t1 = z[:, 0:1] - z[:, 3:4] * cols.u
        t2 = z[:, 1:2] - z[:, 4:5] * cols.v
        e = z[:, 2:3]
        top = np.maximum(np.maximum(t1, t2), e)
        e1, e2, e3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
        total = e1 + e2 + e3
        pred = top + np.log(total)
        if not jac:
            return pred, None
        p1, p2 = e1 / total, e2 / total
        return pred, [p1, p2, e3 / total, -p1 * cols.u, -p2 * cols.v]

    def to_free(self, z, frame):
        """Inner rows -> (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta)."""
        a1, b1, e, al1, be1 = np.atleast_2d(z).T
        al, be = al1 / frame.sn, be1 / frame.sd
        return np.column_stack([a1 + al * frame.mn, b1 + be * frame.md, e, al, be])

    def from_free(self, x, frame):
        a, b, e, al, be = np.atleast_2d(x).T
        return np.column_stack([a - al * frame.mn, b - be * frame.md, e, al * frame.sn, be * frame.sd])

    def to_outer(self, z, frame):
        a, b, e, alpha, beta = self.to_free(z, frame).T
        with np.errstate(over="ignore"):
            return np.column_stack([np.exp(e), np.exp(a), np.exp(b), alpha, beta])

    def to_inner(self, x, frame):
        E, A, B, alpha, beta = np.atleast_2d(x).T
        return self.from_free(np.column_stack([np.log(A), np.log(B), np.log(E), alpha, beta]), frame)

    def law(self, found, cols, delta, notes=()) -> ParametricFit:
        a, b, e, alpha, beta = self.to_free(found.z[None], cols.frame)[0]
        others = self.to_free(found.runner_ups, cols.frame)
        return ParametricFit(
            E=float(np.exp(e)),
            A=float(np.exp(a)),
            B=float(np.exp(b)),
            alpha=float(alpha),
            beta=float(beta),
            objective=float(found.objective),
            n_points=len(cols),
            converged=converged(found),
            delta=delta,
            n_starts=int(found.n_starts),
            runner_ups=tuple(tuple(map(float, row)) for row in others),
        )

    def fitted(self, values, **meta) -> ParametricFit:
        return ParametricFit(**values, **meta)

    def refit_starts(self, law, cols):
        """The optimum and the fit's runner-up basins (a law built by hand has none)."""
        optimum = [np.log(law.A), np.log(law.B), np.log(law.E), law.alpha, law.beta]
        rows = np.array([optimum, *getattr(law, "runner_ups", ())], dtype=float)
        return self.from_free(rows, cols.frame)

    def predict_values(self, P, N, D, U=None):
        return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]

    def optimum_6nd(self, P, C):
        return optimal_6nd(P["A"], P["B"], P["alpha"], P["beta"], C)

    def exponent_rows(self, P):
        """Chinchilla Eq. 4: a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
        return allocation_exponents(P["alpha"], P["beta"])

    def exponents(self, law):
        total = law.alpha + law.beta
        return (law.beta / total, law.alpha / total) if total > 0 else (None, None)

    def no_optimum(self, law) -> str:
        """Eq. 4 divides by alpha and beta: with either at 0 there is no trade-off."""
        if law.alpha > 0 and law.beta > 0:
            return ""
        return (
            f"fitted alpha = {law.alpha:.3g}, beta = {law.beta:.3g}: with an exponent at 0 "
            "the law has no compute-optimal trade-off"
        )

    def exponent_ci(self, samples) -> dict:
        s = np.asarray(samples if samples is not None else [], float)
        if s.ndim != 2 or s.shape[1] < 5 or len(s) < 10:
            return {}
        alpha, beta = s[:, 3], s[:, 4]
        ok = np.isfinite(alpha + beta) & (alpha + beta > 0)
        a = beta[ok] / (alpha[ok] + beta[ok])
        return {"a": list(np.percentile(a, [2.5, 97.5])), "b": list(np.percentile(1 - a, [2.5, 97.5]))}

    def finite_samples(self, samples):
        """The bootstrap rows whose five constants are all finite (a degenerate resample, one
        that drew too few distinct runs, has A or B overflowed; the bootstrap counts them)."""
        samples = np.asarray(samples, dtype=float)
        return samples[np.all(np.isfinite(samples), axis=1)]

    def optimal_interval(self, samples, flops: float, flops_per_token) -> dict:
        """95% intervals of (N*, D*, L*) at `flops` over bootstrap rows (E, A, B, alpha, beta):
        Chinchilla Eq. 4 under 6ND (flops_per_token None), else the numeric optimum per row."""
        E, A, B, alpha, beta = np.asarray(samples, dtype=float).T
        if flops_per_token is None:
            with np.errstate(all="ignore"):  # alpha or beta ~ 0: N* or D* runs off; interval drops it
                n_opt, d_opt = optimal_6nd(A, B, alpha, beta, flops)  # Chinchilla eq. 4, all at once
                loss = E + A / n_opt**alpha + B / d_opt**beta
        else:
            n_opt = numeric_optimum(E, A, B, alpha, beta, flops, flops_per_token)  # every row at once
            d_opt = flops / np.vectorize(flops_per_token, otypes=[float])(n_opt)
            loss = E + A / n_opt**alpha + B / d_opt**beta
        return {
            "flops": flops,
            "params_ci": interval(n_opt),
            "tokens_ci": interval(d_opt),
            "loss_ci": interval(loss),
        }

    def band(self, samples, flops: float) -> dict:
        """N*, D* 95% band at `flops` under 6ND (Eq. 4 vectorised over every bootstrap row)."""
        E, A, B, alpha, beta = np.asarray(samples, float).T
        n_s, d_s = optimal_6nd(A, B, alpha, beta, flops)
        return {
            "params_ci": list(np.nanpercentile(n_s, [2.5, 97.5])),
            "tokens_ci": list(np.nanpercentile(d_s, [2.5, 97.5])),
        }
