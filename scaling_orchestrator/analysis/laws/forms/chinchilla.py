"""Chinchilla's form, L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq. 2).

The fit, bootstrap and intervals are scaling_orchestrator.analysis.laws.parametric and
scaling_orchestrator.analysis.laws.bootstrap unchanged
(Besiroglu et al. 2024's procedure: Huber delta 1e-3 on log L via LSE, the 4500-start grid,
batched L-BFGS, polish); this class only names them for the law-form seam. On Epoch's 240
points: E = 1.8172, A = 477.8, B = 2143, alpha = 0.3473, beta = 0.3672, summed Huber 1.01827e-3.
"""

from __future__ import annotations

import numpy as np

from scaling_orchestrator.analysis.laws.bootstrap import (
    bootstrap_parametric,
    finite_samples,
    optimal_interval,
)
from scaling_orchestrator.analysis.laws.forms.base import Form, allocation_exponents, thin
from scaling_orchestrator.analysis.laws.parametric import (
    CHINCHILLA_GRID,
    PARAM_NAMES,
    fit_parametric,
    optimal_6nd,
)


class Chinchilla(Form):
    """L(N, D) = E + A/N^alpha + B/D^beta; N* ~ C^(beta/(alpha+beta)) under 6ND (Eq. 4)."""

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

    def fit(self, N, D, L, U=None, *, n_starts: int | None = None, **options):
        """fit_parametric (U is ignored: every token counts as new); n_starts thins the grid."""
        grid = "chinchilla" if n_starts is None else thin(CHINCHILLA_GRID, n_starts)
        return fit_parametric(N, D, L, grid=grid, **options)

    def bootstrap(self, N, D, L, runs, U=None, **options) -> dict:
        return bootstrap_parametric(N, D, L, runs, **options)

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
        return finite_samples(samples)

    def optimal_interval(self, samples, flops: float, flops_per_token) -> dict:
        return optimal_interval(samples, flops, flops_per_token)

    def band(self, samples, flops: float) -> dict:
        """N*, D* 95% band at `flops` under 6ND (Eq. 4 vectorised over every bootstrap row)."""
        E, A, B, alpha, beta = np.asarray(samples, float).T
        n_s, d_s = optimal_6nd(A, B, alpha, beta, flops)
        return {
            "params_ci": list(np.nanpercentile(n_s, [2.5, 97.5])),
            "tokens_ci": list(np.nanpercentile(d_s, [2.5, 97.5])),
        }
