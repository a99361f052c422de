"""Schedule-aware loss-curve laws L(N, t; eta), fitted by the shared engine (Huber on log L).

lr_annealing (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing", arXiv:2408.11029,
Eq. 1):        L(t) = L0 + A S1^-alpha - C S2
multi_power (Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
Schedules", arXiv:2503.12811, Eq. 6):
               L(t) = L0 + A S1^-alpha - B sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)),
               G(x) = 1 - (C x + 1)^-beta
with S1, S2, the drops and S_k(t) from schedule.areas (S1 counts the warmup: Luo's S1 + S_W).

Per size (one N) a law has the papers' constants, L0 among them. Across sizes (joint) only the
floor moves with N: L0(N) = E + A_N N^-alpha_N, Chinchilla's separable model-size term
(Hoffmann et al. 2022 Eq. 2) put in place of the papers' per-size L0; the data term (in LR
area) and the annealing term are shared, as Tissue et al. (Sec. 6) find their alpha and C
nearly constant across model sizes. Under a constant LR eta for T steps S1 = eta T, so the
joint law is Chinchilla's with D read through the schedule: compute-optimal allocations exist.

Inner coordinates (what the engine moves): logs of the positive constants, with log N and
log S1 centred on the data (u = log N - mn, s = log S1 - ms) and the drop LRs taken relative to
the largest LR seen (lr_ref), so a start's scale does not ride on log N ~ 20.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.sparse import csr_matrix

from scaling_orchestrator.analysis.laws.curves.schedule import Areas
from scaling_orchestrator.analysis.laws.engine import Objective


@dataclass(frozen=True)
class CurveFrame:
    mn: float       # mean log N
    ms: float       # mean log S1
    lr_ref: float   # largest LR of any drop bin (log)


class CurveColumns:
    """Evaluated points of curves: N, loss, the schedule's areas, the run of each point."""

    def __init__(self, N, L, areas: Areas, frame: CurveFrame | None = None):
        self.N, self.L, self.areas = np.asarray(N, float), np.asarray(L, float), areas
        bad = ~np.isfinite(self.L) | (self.L <= 0) | ~(areas.s1 > 0)
        if bad.any():
            raise ValueError(f"loss: {bad.sum()} points without a finite loss > 0 after some LR area")
        self.y = np.log(self.L)
        log_s1 = np.log(areas.s1)
        used = areas.drop > 0
        lr_ref = float(np.log(areas.drop_lr[used].max())) if used.any() else 0.0
        self.frame = frame or CurveFrame(float(np.log(self.N).mean()), float(log_s1.mean()), lr_ref)
        self.u = np.log(self.N) - self.frame.mn
        self.s = log_s1 - self.frame.ms
        # the drops as a sparse list (a trunk's constant LR has none): point, drop, log LR, log area
        point, k = np.nonzero(areas.drop > 0)
        self.drop = areas.drop[point, k]
        self.log_lr = np.log(areas.drop_lr[point, k]) - self.frame.lr_ref
        self.log_area = np.log(np.maximum(areas.drop_area[point, k], 1e-300))
        self.to_points = csr_matrix((np.ones(len(point)), (point, np.arange(len(point)))),
                                    shape=(len(self.y), len(point)))

    def per_point(self, x) -> np.ndarray:
        """Sum (k, nnz) values over each point's drops -> (k, n)."""
        return np.asarray(self.to_points @ np.asarray(x).T).T

    def __len__(self) -> int:
        return len(self.y)


class CurveForm:
    """A curve law, per size (joint=False) or across sizes (joint=True)."""

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    body: ClassVar[tuple[str, ...]] = ()     # constants besides the floor
    registry: ClassVar[dict] = {}
    keep_starts = 10**6   # no screen: a few dozen starts run on all points (engine.fit_from_starts)
    refine_keep = 8

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            CurveForm.registry[cls.name] = cls

    def __init__(self, joint: bool = False):
        self.joint = joint

    @property
    def constants(self) -> tuple[str, ...]:
        return (("E", "A_N", "alpha_N") if self.joint else ("L0",)) + self.body

    @property
    def head(self) -> int:
        return 3 if self.joint else 1

    def objective(self, cols, delta=1e-3, frozen=()):
        return Objective(self, cols, delta, frozen)

    def floor(self, z, cols):
        """L0 (k, n) and dL0/dz for the head's inner parameters."""
        if not self.joint:
            f = np.exp(z[:, :1]) + 0.0 * cols.u
            return f, [f]
        e, an, alpha_n = z[:, :1], z[:, 1:2], z[:, 2:3]
        term = np.exp(an - alpha_n * cols.u)
        return np.exp(e) + term, [np.exp(e) + 0.0 * term, term, -cols.u * term]

    def log_loss(self, z, cols, jac=True):
        z = np.atleast_2d(z)
        floor, d_floor = self.floor(z, cols)
        body, d_body = self.body_terms(z[:, self.head:], cols)
        loss = floor + body
        with np.errstate(all="ignore"):
            pred = np.log(np.where(loss > 0, loss, np.nan))
        if not jac:
            return pred, None
        return pred, [d / loss for d in d_floor + d_body]

    def floor_starts(self, cols) -> list[list[float]]:
        low = float(cols.L.min())
        if not self.joint:
            return [[np.log(f * low)] for f in (0.5, 0.8, 0.95)]
        return [[np.log(f * e * low), np.log(f * (1 - e) * low), an]
                for f in (0.6, 0.9) for e in (0.5, 0.8) for an in (0.3,)]

    def starts(self, cols):
        rows = [head + body for head, body in itertools.product(self.floor_starts(cols),
                                                                 self.body_starts(cols))]
        return np.array(rows)

    def to_outer(self, z, frame: CurveFrame) -> np.ndarray:
        z = np.atleast_2d(np.asarray(z, float))
        if self.joint:
            head = [np.exp(z[:, 0]), np.exp(z[:, 1] + z[:, 2] * frame.mn), z[:, 2]]
        else:
            head = [np.exp(z[:, 0])]
        return np.column_stack(head + self.body_outer(z[:, self.head:], frame))

    def to_inner(self, x, frame: CurveFrame) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, float))
        with np.errstate(all="ignore"):
            if self.joint:
                head = [np.log(x[:, 0]), np.log(x[:, 1]) - x[:, 2] * frame.mn, x[:, 2]]
            else:
                head = [np.log(x[:, 0])]
            return np.column_stack(head + self.body_inner(x[:, self.head:], frame))

    def data_term(self, z, cols):
        """A S1^-alpha in inner coordinates (a = log A + ... at the centre) and its derivatives."""
        a, alpha = z[:, :1], z[:, 1:2]
        term = np.exp(a - alpha * cols.s)
        return term, [term, -cols.s * term]


class LrAnnealing(CurveForm):
    name = "lr_annealing"
    formula = "L(t) = L0 + A S1^-alpha - C S2"
    citation = "Tissue et al. 2024, Scaling Law with Learning Rate Annealing, arXiv:2408.11029"
    body = ("A", "alpha", "C")

    def body_terms(self, z, cols):
        term, d_term = self.data_term(z, cols)
        anneal = np.exp(z[:, 2:3]) * cols.areas.s2
        return term - anneal, d_term + [-anneal]

    def body_starts(self, cols):
        mean, s2 = float(cols.L.mean()), max(float(cols.areas.s2.max()), 1e-12)
        return [[np.log(share * mean), alpha, np.log(c * mean / s2)]
                for share in (0.1, 0.3) for alpha in (0.3, 0.6, 1.0) for c in (0.01, 0.05, 0.2)]

    def body_outer(self, z, frame):
        return [np.exp(z[:, 0] + z[:, 1] * frame.ms), z[:, 1], np.exp(z[:, 2])]

    def body_inner(self, x, frame):
        return [np.log(x[:, 0]) - x[:, 1] * frame.ms, x[:, 1], np.log(x[:, 2])]


class MultiPower(CurveForm):
    name = "multi_power"
    formula = "L(t) = L0 + A S1^-alpha - B sum_k (eta_{k-1} - eta_k) (1 - (C eta_k^-gamma S_k(t) + 1)^-beta)"
    citation = ("Luo et al. 2025, A Multi-Power Law for Loss Curve Prediction Across Learning Rate "
                "Schedules, arXiv:2503.12811")
    body = ("A", "alpha", "B", "C", "beta", "gamma")

    def body_terms(self, z, cols):
        term, d_term = self.data_term(z, cols)
        b, c, beta, gamma = (z[:, i:i + 1] for i in range(2, 6))
        drop, total = cols.drop, cols.per_point
        with np.errstate(all="ignore"):
            q = np.exp(c + cols.log_area - gamma * cols.log_lr)          # (k, nnz)
            base = 1.0 + q
            power = base ** -np.exp(beta)
            scale = np.exp(b)
            ld = scale * total(drop * (1.0 - power))
            dg_dq = np.exp(beta) * power / base                           # dG/dq
            d_c = -scale * total(drop * dg_dq * q)
            d_gamma = scale * total(drop * dg_dq * q * cols.log_lr)
            d_beta = -scale * total(drop * np.exp(beta) * np.log(base) * power)
        return term - ld, d_term + [-ld, d_c, d_beta, d_gamma]

    def body_starts(self, cols):
        mean = float(cols.L.mean())
        total_drop = max(float(cols.areas.drop.sum(1).max()), 1e-12)
        used = cols.areas.drop > 0
        area = float(np.median(cols.areas.drop_area[used])) if used.any() else 1.0
        return [[np.log(share * mean), alpha, np.log(0.1 * mean / total_drop), np.log(q / area),
                 np.log(0.5), 0.5]
                for share in (0.1, 0.3) for alpha in (0.3, 0.6) for q in (0.3, 3.0, 30.0)]

    def body_outer(self, z, frame):
        return [np.exp(z[:, 0] + z[:, 1] * frame.ms), z[:, 1], np.exp(z[:, 2]),
                np.exp(z[:, 3] + z[:, 5] * frame.lr_ref), np.exp(z[:, 4]), z[:, 5]]

    def body_inner(self, x, frame):
        return [np.log(x[:, 0]) - x[:, 1] * frame.ms, x[:, 1], np.log(x[:, 2]),
                np.log(x[:, 3]) - x[:, 5] * frame.lr_ref, np.log(x[:, 4]), x[:, 5]]


def curve_form(name: str, joint: bool = False) -> CurveForm:
    if name not in CurveForm.registry:
        raise ValueError(f"law={name!r}: allowed curve laws: {', '.join(map(repr, CurveForm.registry))}")
    return CurveForm.registry[name](joint)
