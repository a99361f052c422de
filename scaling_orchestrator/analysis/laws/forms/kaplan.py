"""Kaplan's joint law, L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D.

Kaplan et al. 2020 eq. (1.5) (their fit, Table 2: alpha_N = 0.076, alpha_D = 0.095,
N_c = 8.8e13, D_c = 5.4e13, N non-embedding parameters). It has no irreducible term: the loss
falls to 0 as N, D grow, which is what bends its extrapolations below a floor.

Under C = 6ND it has a closed-form optimum: with k = alpha_N/alpha_D, minimise
(N_c/N)^k + 6 D_c N / C over N: N* = (k N_c^k C / (6 D_c))^(1/(1+k)), so N* ~ C^a with
a = alpha_D/(alpha_N + alpha_D) (Kaplan's constants: 0.556) and b = 1 - a.

Fitted as log L = alpha_D LSE(t1, t2), t1 = k (log N_c - log N), t2 = log D_c - log D, in
inner coordinates z = (g1, k1, g2, alpha_D) with g1 = k (log N_c - mn), k1 = k sn,
g2 = log D_c - md (u, v the centred log N, log D of scaling_orchestrator.analysis.laws.engine.Frame).
"""

from __future__ import annotations

import itertools

import numpy as np

from scaling_orchestrator.analysis.laws.forms.base import Form, allocation_exponents

# Start grid, data-informed: alpha_D x k x the share w of the N term at the data's centre,
# with t1, t2 placed so that alpha_D LSE(t1, t2) = mean log L there. 5 x 5 x 5 = 125 starts.
ALPHA_D_STARTS = (0.05, 0.1, 0.2, 0.4, 0.8)
RATIO_STARTS = (0.25, 0.5, 1.0, 2.0, 4.0)
SHARE_STARTS = (0.05, 0.25, 0.5, 0.75, 0.95)


class Kaplan(Form):
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D."""

    name = "kaplan"
    formula = "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"
    citation = ("Kaplan et al. 2020, Scaling Laws for Neural Language Models, "
                "arXiv:2001.08361, eq. (1.5)")
    constants = ("alpha_N", "alpha_D", "N_c", "D_c")

    def starts(self, cols):
        mean_log_loss = float(cols.y.mean())
        rows = []
        for alpha_d, k, w in itertools.product(ALPHA_D_STARTS, RATIO_STARTS, SHARE_STARTS):
            s0 = mean_log_loss / alpha_d
            rows.append([s0 + np.log(w), k * cols.frame.sn, s0 + np.log1p(-w), alpha_d])
        return np.array(rows)

    def log_loss(self, z, cols, jac=True):
        g1, k1, g2, alpha_d = (z[:, i:i + 1] for i in range(4))
        t1 = g1 - k1 * cols.u
        t2 = g2 - cols.frame.sd * cols.v
        top = np.maximum(t1, t2)
        e1, e2 = np.exp(t1 - top), np.exp(t2 - top)
        lse = top + np.log(e1 + e2)
        pred = alpha_d * lse
        if not jac:
            return pred, None
        p1 = e1 / (e1 + e2)
        return pred, [alpha_d * p1, -alpha_d * p1 * cols.u, alpha_d * (1.0 - p1), lse]

    def to_outer(self, z, frame):
        g1, k1, g2, alpha_d = np.atleast_2d(z).T
        k = k1 / frame.sn
        with np.errstate(all="ignore"):
            return np.column_stack([k * alpha_d, alpha_d, np.exp(g1 / k + frame.mn),
                                    np.exp(g2 + frame.md)])

    def to_inner(self, x, frame):
        alpha_n, alpha_d, n_c, d_c = np.atleast_2d(x).T
        k = alpha_n / alpha_d
        return np.column_stack([k * (np.log(n_c) - frame.mn), k * frame.sn,
                                np.log(d_c) - frame.md, alpha_d])

    def predict_values(self, P, N, D, U=None):
        k = P["alpha_N"] / P["alpha_D"]
        return ((P["N_c"] / N) ** k + P["D_c"] / D) ** P["alpha_D"]

    def optimum_6nd(self, P, C):
        k = np.asarray(P["alpha_N"], float) / np.asarray(P["alpha_D"], float)
        with np.errstate(all="ignore"):
            log_n = (np.log(k) + k * np.log(P["N_c"]) + np.log(C) - np.log(6.0)
                     - np.log(P["D_c"])) / (1.0 + k)
        n_opt = np.exp(log_n)
        return n_opt, C / (6.0 * n_opt)

    def exponent_rows(self, P):
        return allocation_exponents(P["alpha_N"], P["alpha_D"])

    def no_optimum(self, law) -> str:
        if law.alpha_N > 0 and law.alpha_D > 0:
            return ""
        return (f"fitted alpha_N = {law.alpha_N:.3g}, alpha_D = {law.alpha_D:.3g}: with an "
                "exponent at or below 0 the law has no compute-optimal trade-off")
