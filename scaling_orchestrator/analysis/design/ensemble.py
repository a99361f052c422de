"""The bootstrap ensemble an adaptive study plans with, and its linear-Gaussian update.

A run-bootstrap of the law (scaling_orchestrator.analysis.laws.bootstrap) gives R parameter vectors theta_b.
Each one
implies a target t_b = log N*(C_target; theta_b), the loss there l_b = log L*(C_target;
theta_b), and a prediction y_b(x) = log L(x; theta_b) at every candidate run x. Observing
y(x) with noise sigma^2 removes

    Var(t) - Var(t | y(x)) = Cov_b(t, y(x))^2 / (Var_b(y(x)) + sigma^2)

from the target's variance (the linear-Gaussian update the ensemble Kalman filter makes,
Evensen 1994). Choosing x changes what the next choice can add, so `Ensemble.observe` updates
the members' anomalies as if y(x) had been observed (the serial square-root update of Whitaker
& Hamill 2002, eq. 13: the mean does not enter a variance, so no value has to be invented).

Worked number: Var(t) = 0.04 (a 95% interval of x/÷ exp(1.96 * 0.2) = 1.48 on N*),
Cov(t, y) = 0.002, Var(y) = 1e-4, sigma = 0.01: the run removes 4e-6 / 2e-4 = 0.02, half
of Var(t); the interval narrows to x/÷ exp(1.96 * sqrt(0.02)) = 1.32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling_orchestrator.analysis.laws.bootstrap import interval

MIN_NOISE = 1e-3  # the Huber delta on log L: residuals below it are not resolved
TRIM_PERCENT = 2.5  # members outside the target's central 95% are left out (see trim)


@dataclass(frozen=True)
class Ensemble:
    """Anomalies (deviations from the member mean) of t, l and y(x) per candidate, member rows."""

    target: np.ndarray  # (R,) anomalies of log N*(C_target)
    loss: np.ndarray  # (R,) anomalies of log L*(C_target), or (R, T) of log L at T target points
    predictions: np.ndarray  # (R, K) anomalies of log L at each candidate
    noise_var: float  # sigma^2 of one observation of log L

    @property
    def n_members(self) -> int:
        return len(self.target)

    def variances(self) -> tuple[float, float]:
        """(Var log N*, Var log L*) over the members; log L at T target points: the mean of
        their variances (the V-optimal criterion)."""
        r = max(self.n_members - 1, 1)
        return float(self.target @ self.target / r), float(np.mean(np.sum(self.loss**2, axis=0)) / r)

    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """Variance each candidate's observation would remove from log N* and log L*: (K,), (K,)."""
        r = max(self.n_members - 1, 1)
        var_y = np.einsum("rk,rk->k", self.predictions, self.predictions) / r
        cov_t = self.target @ self.predictions / r
        cov_l = self.loss.T @ self.predictions / r  # (K,) or (T, K)
        denominator = var_y + self.noise_var
        gain_l = cov_l**2 / denominator
        return cov_t**2 / denominator, gain_l if gain_l.ndim == 1 else gain_l.mean(axis=0)

    def observe(self, k: int) -> Ensemble:
        """The ensemble after candidate k is observed: every anomaly z becomes
        z - alpha K_z y_k with K_z = Cov(z, y_k) / (Var y_k + sigma^2) and
        alpha = 1 / (1 + sqrt(sigma^2 / (Var y_k + sigma^2)))."""
        r = max(self.n_members - 1, 1)
        y = self.predictions[:, k]
        denominator = y @ y / r + self.noise_var
        alpha = 1.0 / (1.0 + np.sqrt(self.noise_var / denominator))

        def shrink(z):
            return z - alpha * np.outer(y, y @ z / r / denominator).reshape(z.shape)

        return Ensemble(shrink(self.target), shrink(self.loss), shrink(self.predictions), self.noise_var)


@dataclass(frozen=True)
class Answer:
    """The fit's answer at C_target: N* and L* with their 95% bootstrap intervals."""

    target_flops: float
    params: float
    params_ci: tuple[float, float]
    loss: float
    loss_ci: tuple[float, float]
    noise_sigma: float  # residual sd of log L (multiplicative noise: 0.01 = 1%)
    n_points: int
    n_members: int

    @property
    def ratio(self) -> float:
        """hi / lo of N*'s 95% interval: within x/÷ tolerance means ratio <= tolerance^2."""
        lo, hi = self.params_ci
        return hi / lo if lo > 0 and np.isfinite(hi) else float("inf")

    def within(self, tolerance: float) -> bool:
        return self.ratio <= tolerance**2

    def to_dict(self) -> dict:
        return {
            "target_flops": self.target_flops,
            "params": self.params,
            "params_ci": list(self.params_ci),
            "loss": self.loss,
            "loss_ci": list(self.loss_ci),
            "interval_ratio": self.ratio,
            "noise_sigma": self.noise_sigma,
            "n_points": self.n_points,
            "n_members": self.n_members,
        }


def noise_sigma(law, N, D, L, n_constants: int) -> float:
    """Residual sd of log L about the fitted law, sum(r^2) / (n - p) (p the law's constants),
    at least MIN_NOISE."""
    with np.errstate(all="ignore"):
        r = np.log(L) - np.log(np.asarray(law.predict(N, D), float))
    r = r[np.isfinite(r)]
    dof = max(len(r) - n_constants, 1)
    return float(max(np.sqrt(np.sum(r**2) / dof), MIN_NOISE))


def member_answers(form, samples, target_flops: float, flops_per_token: Callable | None):
    """(log N*, log L*) per bootstrap row at target_flops; NaN where a row has no optimum."""
    P = dict(zip(form.constants, np.asarray(samples, float).T))
    with np.errstate(all="ignore"):
        n_opt, d_opt = form.optimum(P, np.full(len(samples), float(target_flops)), flops_per_token)
        loss = form.predict_values(P, n_opt, d_opt)
        return np.log(np.asarray(n_opt, float)), np.log(np.asarray(loss, float))


def member_predictions(form, samples, N, D) -> np.ndarray:
    """log L per bootstrap row (R) at each candidate (K): (R, K)."""
    P = {k: np.asarray(col)[:, None] for k, col in zip(form.constants, np.asarray(samples).T)}
    with np.errstate(all="ignore"):
        return np.log(
            np.asarray(form.predict_values(P, np.asarray(N, float)[None], np.asarray(D, float)[None]), float)
        )


def trim(t: np.ndarray, l: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Members to keep: finite everywhere, inside the central 95% of t and of l. A resample
    that drew few distinct runs can put N* decades away (alpha -> 0); one such member in 200
    would own the covariances, the percentile interval already ignores it."""
    ok = np.isfinite(t) & np.isfinite(l) & np.all(np.isfinite(y), axis=1)
    if ok.sum() < 10:
        return ok
    for z in (t, l):
        lo, hi = np.percentile(z[ok], [TRIM_PERCENT, 100 - TRIM_PERCENT])
        ok &= (z >= lo) & (z <= hi)
    return ok


def build(
    form,
    law,
    samples,
    *,
    target_flops: float,
    observed,
    candidates_N,
    candidates_D,
    flops_per_token: Callable | None = None,
    loss_points=None,
) -> tuple[Answer, Ensemble]:
    """The answer at target_flops and the ensemble over the candidates, from a fitted law and
    its bootstrap rows. observed: (N, D, L) arrays of the fitted points. loss_points: (N, D)
    arrays of T points whose log L the loss term follows (the V-optimal criterion over them);
    None: log L* at each member's own optimum."""
    N, D, L = (np.asarray(v, float) for v in observed)
    sigma = noise_sigma(law, N, D, L, len(form.constants))
    t, l = member_answers(form, samples, target_flops, flops_per_token)
    y = member_predictions(form, samples, candidates_N, candidates_D)
    with np.errstate(all="ignore"):
        n_fit, _, l_fit = law.compute_optimal(float(target_flops), flops_per_token)
    finite_t, finite_l = t[np.isfinite(t)], l[np.isfinite(l)]
    answer = Answer(
        float(target_flops),
        float(n_fit),
        tuple(interval(np.exp(finite_t))),
        float(l_fit),
        tuple(interval(np.exp(finite_l))),
        sigma,
        len(L),
        int(np.isfinite(t).sum()),
    )
    keep = trim(t, l, y)
    if loss_points is not None:
        l = member_predictions(form, samples, *loss_points)
        keep &= np.all(np.isfinite(l), axis=1)
    if keep.sum() < 2:
        raise ValueError(
            f"bootstrap: {keep.sum()} of {len(t)} resamples give a finite N* at "
            f"{target_flops:g} FLOPs; the law is not identified by these points"
        )
    t, l, y = t[keep], l[keep], y[keep]
    return answer, Ensemble(t - t.mean(), l - l.mean(), y - y.mean(axis=0), sigma**2)
