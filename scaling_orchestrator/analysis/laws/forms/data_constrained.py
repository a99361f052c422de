"""The data-constrained law: Chinchilla's form in effective data D' and effective params N'.

Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264, eq. (5)
and (6): L(N, D, U) = E + A/N'^alpha + B/D'^beta with
  D' = U + U R_D* (1 - exp(-R_D / R_D*)),  R_D = D/U - 1   (epochs beyond the first),
  N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  R_N = N/U_N - 1,  U_N = min(N, N_opt(U)),
where U is the unique tokens (a table's tokens / epochs) and N_opt(U) the Chinchilla-optimal
size for which U is the optimal data: log N_opt(U) = (a - b + log(alpha/beta) + beta log U)
/ alpha (Eq. 4 solved for D* = U; A = e^a, B = e^b). Repeated tokens, and parameters past
N_opt(U), are worth less and less: at most R_D* (R_N*) times U (U_N) more. Their C4 fit:
R_D* = 15.387756, R_N* = 5.309743 (huggingface/datablations, utils/parametric_fit.ipynb).

All seven constants are fitted jointly (they froze E, A, B, alpha, beta from a first fit) with
the Huber objective of every form, N_opt(U) following the current constants (its gradient
included). What a table cannot identify is not fitted, and the law says so in `notes`:
- no run repeats data (fewer than MIN_REGIME_POINTS points with R_D > REGIME_THRESHOLD):
  R_D* is not identifiable; D' = D (R_D* reported as inf).
- fewer than MIN_REGIME_POINTS points carry excess parameters (R_N > REGIME_THRESHOLD) under
  the fitted law: the N' part is not identifiable; N' = N (R_N* = inf) and the law is refitted.
R* = inf is held in the fit as R* = NEVER (1e15): r (1 - exp(-R/r)) = R to 1e-15 relative.

compute_optimal(C) with unlimited unique data is Chinchilla's Eq. 4: N' <= N with equality
when N <= N_opt(D), and Eq. 4's optimum has N* = N_opt(D*) exactly, so no allocation does
better. With unique_tokens = U it searches log N at D' from U: a data-constrained optimum.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from scaling_orchestrator.analysis.laws.engine import fit_from_starts, thin
from scaling_orchestrator.analysis.laws.forms.base import Form, allocation_exponents
from scaling_orchestrator.analysis.laws.forms.chinchilla import Chinchilla, optimal_6nd

MIN_REGIME_POINTS = 3
REGIME_THRESHOLD = 0.01         # 1% repeated tokens (or excess parameters)
NEVER = 1e15                    # R* standing for inf inside the fit
R_D_STAR, R_N_STAR = 15.387756, 5.309743
# Starts: Chinchilla's fit (its 4500-start grid) on effective data at their R_D* with N' = N,
# crossed with R_D* x R_N*: 5 x 3 = 15 starts. A grid over all seven
# constants (5184 starts) cost 100 s on 400 points; this costs one Chinchilla fit more.
R_D_STARTS = (2.0, 5.0, R_D_STAR, 50.0, 200.0)
R_N_STARTS = (1.0, R_N_STAR, 30.0)
MIN_EXPONENT_START = 0.05  # N_opt(U) takes log(alpha / beta)


def log_gain(R, log_r):
    """h = log(1 + r (1 - exp(-R/r))) with dh/d log r and dh/dR (r = exp(log_r))."""
    r = np.exp(log_r)
    x = R / r
    kept = -np.expm1(-x)
    decay = np.exp(-x)
    denominator = 1.0 + r * kept
    return (np.log(denominator), r * (kept - x * decay) / denominator, decay / denominator)


def effective(count, R, r):
    """count (1 + r (1 - exp(-R/r))); r = inf counts every repeat in full: count (1 + R)."""
    with np.errstate(invalid="ignore", over="ignore"):
        decayed = count * (1.0 + r * -np.expm1(-R / r))
    return np.where(np.isinf(r), count * (1.0 + R), decayed)


class DataConstrained(Form):
    """L(N, D, U) = E + A/N'^alpha + B/D'^beta (Muennighoff et al. 2023)."""

    name = "data_constrained"
    formula = (
        "L(N, D, U) = E + A/N'^alpha + B/D'^beta; D' = U + U R_D* (1 - exp(-(D/U - 1)"
        "/R_D*)), N' = U_N + U_N R_N* (1 - exp(-(N/U_N - 1)/R_N*)), "
        "U_N = min(N, N_opt(U))"
    )
    citation = (
        "Muennighoff et al. 2023, Scaling Data-Constrained Language Models, arXiv:2305.16264, eq. (5)-(6)"
    )
    constants = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")
    required_columns = ("unique_tokens",)
    may_be_infinite = ("R_D_star", "R_N_star")
    loss_floor = "E"
    term_exponents = ("alpha", "beta")

    def frozen(self, cols, law=None):
        repeats = np.expm1(cols.log_d - cols.log_u) > REGIME_THRESHOLD
        held = [5] if repeats.sum() < MIN_REGIME_POINTS else []
        if law is not None and law.values["R_N_star"] == np.inf:
            held.append(6)
        return tuple(held)

    def starts(self, cols):
        """Inner rows (a1, b1, e, alpha1, beta1, log R_D*, log R_N*)."""
        r_d = (NEVER,) if 5 in self.frozen(cols) else R_D_STARTS
        u = np.exp(cols.log_u)
        d_eff = effective(u, np.exp(cols.log_d) / u - 1.0, r_d[0] if len(r_d) == 1 else R_D_STAR)
        core = Chinchilla().fit(np.exp(cols.log_n), d_eff, np.exp(cols.y))
        alpha, beta = (max(x, MIN_EXPONENT_START) for x in (core.alpha, core.beta))
        rows = [
            [core.E, core.A, core.B, alpha, beta, rd, rn] for rd, rn in itertools.product(r_d, R_N_STARTS)
        ]
        return self.to_inner(np.array(rows), cols.frame)

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
        """Form.fit, then the N' part dropped (and the rest refitted) if no run exceeds
        N_opt(U) under the fitted law; `notes` says what was not identifiable."""
        cols = self.columns(N, D, L, U)
        frozen = self.frozen(cols)
        options = dict(delta=delta, weights=weights, threads=threads)

        def starts(data):
            return thin(self.starts(data), n_starts)

        found = fit_from_starts(self, cols, starts, screen=screen, frozen=frozen, **options)
        notes = [] if 5 not in frozen else ["R_D* not identifiable: fewer than 3 runs repeat data; D' = D"]
        if self.excess_points(found.z, cols) < MIN_REGIME_POINTS:
            z = found.z.copy()
            z[6] = np.log(NEVER)
            again = fit_from_starts(self, cols, lambda _: z, screen=False, frozen=frozen + (6,), **options)
            found = dataclasses.replace(again, n_starts=found.n_starts)
            notes.append("R_N* not identifiable: fewer than 3 runs exceed N_opt(U); N' = N")
        return self.law(found, cols, delta, notes)

    def excess_points(self, z, cols) -> int:
        """Points whose N exceeds N_opt(U) by more than REGIME_THRESHOLD under inner z."""
        P = dict(zip(self.constants, self.to_outer(z[None], cols.frame)[0]))
        return int((np.exp(cols.log_n - self.log_n_opt(P, cols.log_u)) - 1 > REGIME_THRESHOLD).sum())

    @staticmethod
    def log_n_opt(P, log_u):
        """log N_opt(U) = (a - b + log(alpha/beta) + beta log U) / alpha."""
        alpha, beta = P["alpha"], P["beta"]
        with np.errstate(all="ignore"):
            return (np.log(P["A"]) - np.log(P["B"]) + np.log(alpha / beta) + beta * log_u) / alpha

    def log_loss(self, z, cols, jac=True):
        a1, b1, e, al1, be1, rd, rn = (z[:, i : i + 1] for i in range(7))
        fr, log_u, log_n = cols.frame, cols.log_u, cols.log_n
        alpha, beta = al1 / fr.sn, be1 / fr.sd
        a, b = a1 + alpha * fr.mn, b1 + beta * fr.md
        h_d, dhd_dr, _ = log_gain(np.expm1(cols.log_d - log_u), rd)
        log_dp = log_u + h_d
        f = (a - b + np.log(alpha) - np.log(beta) + beta * log_u) / alpha  # log N_opt(U)
        excess = f < log_n
        r_n = np.where(excess, np.expm1(log_n - f), 0.0)
        h_n, dhn_dr, dhn_dR = log_gain(r_n, rn)
        log_np = np.where(excess, f, log_n) + h_n
        t1, t2 = a - alpha * log_np, b - beta * log_dp
        top = np.maximum(np.maximum(t1, t2), e)
        e1, e2, e3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
        total = e1 + e2 + e3
        pred = top + np.log(total)
        if not jac:
            return pred, None
        p1, p2, p3 = e1 / total, e2 / total, e3 / total
        K = np.where(excess, 1.0 - dhn_dR * (r_n + 1.0), 0.0)  # d log N' / d log N_opt
        g_a, g_b = p1 * (1.0 - K), p1 * K + p2
        # df/dalpha = (1/alpha - f)/alpha, df/dbeta = (log U - 1/beta)/alpha
        g_alpha = -p1 * (log_np + K * (1.0 / alpha - f))
        g_beta = -p1 * K * (log_u - 1.0 / beta) - p2 * log_dp
        return pred, [
            g_a,
            g_b,
            p3,
            (g_a * fr.mn + g_alpha) / fr.sn,
            (g_b * fr.md + g_beta) / fr.sd,
            -p2 * beta * dhd_dr,
            -p1 * alpha * dhn_dr,
        ]

    def to_outer(self, z, frame):
        a1, b1, e, al1, be1, rd, rn = np.atleast_2d(z).T
        alpha, beta = al1 / frame.sn, be1 / frame.sd
        never = np.log(NEVER) * (1 - 1e-12)
        with np.errstate(all="ignore"):
            return np.column_stack(
                [
                    np.exp(e),
                    np.exp(a1 + alpha * frame.mn),
                    np.exp(b1 + beta * frame.md),
                    alpha,
                    beta,
                    np.where(rd >= never, np.inf, np.exp(rd)),
                    np.where(rn >= never, np.inf, np.exp(rn)),
                ]
            )

    def to_inner(self, x, frame):
        E, A, B, alpha, beta, r_d, r_n = np.atleast_2d(x).T
        return np.column_stack(
            [
                np.log(A) - alpha * frame.mn,
                np.log(B) - beta * frame.md,
                np.log(E),
                alpha * frame.sn,
                beta * frame.sd,
                np.log(np.minimum(r_d, NEVER)),
                np.log(np.minimum(r_n, NEVER)),
            ]
        )

    def predict_values(self, P, N, D, U=None):
        """U: unique tokens available (None: every token is new); a run sees min(U, D)."""
        N, D = np.asarray(N, float), np.asarray(D, float)
        U = D if U is None else np.minimum(np.asarray(U, float), D)
        d_eff = effective(U, D / U - 1.0, P["R_D_star"])
        u_n = np.minimum(N, np.exp(self.log_n_opt(P, np.log(U))))
        n_eff = effective(u_n, N / u_n - 1.0, P["R_N_star"])
        return P["E"] + P["A"] / n_eff ** P["alpha"] + P["B"] / d_eff ** P["beta"]

    def optimum_6nd(self, P, C):
        return optimal_6nd(P["A"], P["B"], P["alpha"], P["beta"], C)

    def exponent_rows(self, P):
        return allocation_exponents(P["alpha"], P["beta"])

    def no_optimum(self, law) -> str:
        if law.alpha > 0 and law.beta > 0:
            return ""
        return (
            f"fitted alpha = {law.alpha:.3g}, beta = {law.beta:.3g}: with an exponent at 0 "
            "the law has no compute-optimal trade-off"
        )
