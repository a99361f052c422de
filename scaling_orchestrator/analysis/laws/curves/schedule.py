"""Learning-rate schedules as per-step arrays, and the areas the curve laws read from them.

A schedule is `eta`, the LR of each optimizer step: eta[i - 1] is the LR of step i (1-based), so
after t steps the LR area is S1(t) = eta[:t].sum().

- Our own runs: `recipe_lr` is the recipe's schedule (models/training/config.py `lr_at`, the
  same arithmetic vectorised; a test holds the two equal step by step), so a row's schedule is
  rebuilt exactly from its schedule name, peak LR and step count.
- Foreign curves log the LR at some steps: `logged_lr` joins them by straight lines from LR 0 at
  step 0 and takes each step's mean LR, so S1 is the trapezoid rule between logged points and a
  linear warmup before the first logged step is counted. Logged (0, 0), (10, 1e-3): S1(10) =
  10 x 5e-4 = 5e-3.

From eta, `areas` gives what the laws need at each evaluated step t:
- S1(t), the forward area (Tissue et al. 2024 Eq. 1; Luo et al. 2025's S1 + S_W);
- S2(t), Tissue et al.'s annealing area with momentum: m_i = lam m_{i-1} + (eta_{i-1} - eta_i),
  S2 = sum m_i, lam = 0.999 (their default), counted from the LR's peak on (the warmup's rise
  is not an anneal);
- the LR drops binned for Luo et al.'s loss-drop sum, sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma
  S_k(t)): the steps after the peak fall into at most DROP_BINS bins whose edges include every
  evaluated step, each bin at its drop-weighted mean step (a cosine of 2,000 steps: 48 bins of
  ~40 steps; the binned sum is within 1e-3 relative of the per-step one on the tests' curves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEDULES = ("cosine", "wsd", "constant")
MOMENTUM = 0.999   # Tissue et al. 2024, lambda of the annealing momentum
DROP_BINS = 48


def recipe_lr(total_steps: int, peak: float, schedule: str = "cosine", *, warmup_steps: int | None = None,
              warmup_fraction: float = 0.05, min_lr_ratio: float = 0.1, decay_fraction: float = 0.2,
              decay_shape: str = "linear") -> np.ndarray:
    """eta for a run of total_steps under the recipe's schedule (lr_at of models/training/config.py
    for steps 0 .. total_steps - 1): 1000 steps, 5% warmup: eta[0] = peak/50, eta[49] = peak,
    eta[999] = 0.1 peak (cosine)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")
    total = int(total_steps)
    warmup = int(warmup_fraction * total) if warmup_steps is None else int(warmup_steps)
    floor = peak * min_lr_ratio
    step = np.arange(total, dtype=float)
    if schedule == "constant":
        eta = np.full(total, peak)
    elif schedule == "cosine":
        progress = np.minimum((step - warmup) / max(1, total - 1 - warmup), 1.0)
        eta = floor + 0.5 * (1.0 + np.cos(np.pi * progress)) * (peak - floor)
    else:
        decay = max(1, round(decay_fraction * total))
        progress = np.clip((step - (total - decay) + 1) / decay, 0.0, 1.0)
        shape = 1.0 - np.sqrt(progress) if decay_shape == "1-sqrt" else 1.0 - progress
        eta = np.where(step < total - decay, peak, floor + (peak - floor) * shape)
    if warmup > 0:
        eta = np.where(step < warmup, peak * (step + 1) / warmup, eta)
    return eta


def logged_lr(steps, lrs) -> np.ndarray:
    """eta up to the last logged step from LRs logged at some steps (straight lines between them,
    from LR 0 at step 0): each step's LR is the mean over it, so cumsum(eta) is the trapezoid rule."""
    steps, lrs = np.asarray(steps, float), np.asarray(lrs, float)
    order = np.argsort(steps)
    steps, lrs = steps[order], lrs[order]
    if np.any(steps <= 0) or np.any(~np.isfinite(lrs)) or np.any(lrs < 0):
        raise ValueError("lr: steps must be >= 1 and learning rates finite and >= 0")
    grid = np.arange(int(steps[-1]) + 1, dtype=float)
    at = np.interp(grid, np.concatenate([[0.0], steps]), np.concatenate([[0.0], lrs]))
    return 0.5 * (at[:-1] + at[1:])


@dataclass(frozen=True)
class Areas:
    """What the curve laws read at n evaluated steps of one or more runs (rows line up)."""

    s1: np.ndarray       # (n,) forward area S1(t), LR x steps
    s2: np.ndarray       # (n,) Tissue's momentum annealing area
    drop: np.ndarray     # (n, K) LR drop of each bin before t (0 past t and in padding)
    drop_lr: np.ndarray  # (n, K) the LR at the bin's step (1 in padding)
    drop_area: np.ndarray  # (n, K) S_k(t): the LR area from the bin's step to t

    @staticmethod
    def concat(parts) -> Areas:
        width = max(p.drop.shape[1] for p in parts)

        def pad(x, fill):
            return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)

        return Areas(np.concatenate([p.s1 for p in parts]), np.concatenate([p.s2 for p in parts]),
                     np.concatenate([pad(p.drop, 0.0) for p in parts]),
                     np.concatenate([pad(p.drop_lr, 1.0) for p in parts]),
                     np.concatenate([pad(p.drop_area, 0.0) for p in parts]))

    def select(self, rows) -> Areas:
        return Areas(self.s1[rows], self.s2[rows], self.drop[rows], self.drop_lr[rows], self.drop_area[rows])


def momentum_sums(delta) -> np.ndarray:
    """m_i = delta_i + MOMENTUM m_(i-1), in step order: the floats scipy.signal.lfilter([1],
    [1, -MOMENTUM], delta) gives, bit for bit, without importing scipy.signal (and scipy.stats
    with it: 0.5 s of every `scaling` command on a busy 2-core machine)."""
    out, acc = [], 0.0
    for d in np.asarray(delta, float).tolist():
        acc = d + MOMENTUM * acc
        out.append(acc)
    return np.asarray(out, float)


def areas(eta, steps, bins: int = DROP_BINS) -> Areas:
    """The areas of one run's schedule eta at its evaluated steps (1 <= step <= len(eta))."""
    eta = np.asarray(eta, float)
    steps = np.asarray(steps, int)
    if len(steps) and (steps.min() < 1 or steps.max() > len(eta)):
        raise ValueError(f"step: evaluations at steps {steps.min()}..{steps.max()}; the schedule has "
                         f"{len(eta)} steps")
    cum = np.concatenate([[0.0], np.cumsum(eta)])
    peak = int(np.argmax(eta))
    delta = np.concatenate([[0.0], eta[:-1] - eta[1:]])   # delta[i] = eta_{i-1} - eta_i, step i + 1
    delta[: peak + 1] = 0.0
    s2 = np.cumsum(momentum_sums(delta))
    edges = _bin_edges(peak + 1, len(eta), steps, bins)
    drop, at_step = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):         # steps lo+1 .. hi (1-based)
        d = delta[lo:hi]
        total = d.sum()
        mean = lo + 1 + (np.arange(hi - lo) * d).sum() / total if total > 0 else hi
        drop.append(total)
        at_step.append(mean)
    drop, at_step = np.asarray(drop), np.asarray(at_step)
    k = np.clip(np.round(at_step).astype(int), 1, len(eta))
    before = k[None, :] <= steps[:, None]
    return Areas(cum[steps], s2[steps - 1],
                 np.where(before, drop[None, :], 0.0),
                 np.where(before, eta[k - 1][None, :], 1.0),
                 np.where(before, cum[steps][:, None] - cum[k - 1][None, :], 0.0))


def _bin_edges(first: int, last: int, steps, bins: int) -> np.ndarray:
    """Step edges from the peak to the end: an even grid of `bins` plus every evaluated step."""
    if last <= first:
        return np.array([first, last])
    grid = np.linspace(first, last, bins + 1).round().astype(int)
    inside = steps[(steps > first) & (steps < last)]
    return np.unique(np.concatenate([grid, inside]))
