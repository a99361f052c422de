"""The batched IsoFLOP bootstrap against the per-resample loop it replaced: the same draws, the
same rows to about 1e-12, on budgets with duplicate sizes, edges, non-convex windows and too
few runs."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.isoflop import _law, fit_budget
from scaling_orchestrator.analysis.methods.isoflop_bootstrap import bootstrap_rows, resample_counts


def one_at_a_time(N, D, L, groups, axis, window, n_resamples, seed) -> np.ndarray:
    """The loop: each resample's budgets fitted by fit_budget, its law by _law."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_resamples):
        drawn = [(b, rng.choice(g, size=len(g), replace=True)) for b, g in groups]
        try:
            out.append(_law([fit_budget(b, N[g], D[g], L[g], axis=axis, window=window) for b, g in drawn]))
        except (NotFittable, np.linalg.LinAlgError, ValueError):
            continue
    rows = np.asarray(out, dtype=float).reshape(-1, 4)
    return rows[np.all(np.isfinite(rows), axis=1)]


def budgets(seed: int, noise: float):
    """Seven budgets of 7 sizes (two seeds of some sizes, one budget of 2 runs, one of 3, where a
    resample often holds fewer than 3 distinct sizes), loss a noisy valley in log N: edges,
    duplicates and non-convex resamples all occur."""
    rng = np.random.default_rng(seed)
    N, D, L, groups, start = [], [], [], [], 0
    for i, C in enumerate(np.logspace(18, 21, 7)):
        n_opt = 0.1 * C ** 0.5
        sizes = n_opt * np.logspace(-0.8, 0.8, 7) * (1.4 if i == 2 else 1.0)
        sizes = np.concatenate([sizes, sizes[[1, 3]]]) if i % 2 else sizes
        sizes = sizes[:2] if i == 5 else sizes[2:5] if i == 6 else sizes
        N += list(sizes)
        D += list(C / (6 * sizes))
        L += list(2 + 0.05 * np.log10(sizes / n_opt) ** 2 * 10 + noise * rng.standard_normal(len(sizes)))
        groups.append((float(C), np.arange(start, start + len(sizes))))
        start += len(sizes)
    return np.array(N), np.array(D), np.array(L), groups


@pytest.mark.parametrize("axis, noise", [("params", 0.03), ("params", 0.3), ("tokens", 0.3)])
def test_the_batched_bootstrap_is_the_loop(axis, noise):
    """At noise 0.3 windows bend the wrong way and widen, and vertices land far outside."""
    N, D, L, groups = budgets(7, noise)
    with np.errstate(all="ignore"):
        batched = bootstrap_rows(N, D, L, groups, axis, 5, 40, seed=3)
        looped = one_at_a_time(N, D, L, groups, axis, 5, 40, 3)
    assert batched.shape == looped.shape and len(looped) > 30
    np.testing.assert_allclose(batched, looped, rtol=1e-8)


def test_the_resample_counts_are_the_draws_of_one_choice_per_budget():
    """One call with a bound per draw gives the stream of rng.choice(len(g), len(g)) called
    resample by resample, budget by budget (what the loop above draws)."""
    groups = [(1e18, np.arange(7)), (2e18, np.arange(7, 16)), (4e18, np.arange(16, 20))]
    rng = np.random.default_rng(5)
    loop = [np.zeros((50, len(g)), np.int64) for _, g in groups]
    for r in range(50):
        for counts, (_, g) in zip(loop, groups):
            counts[r] = np.bincount(rng.choice(len(g), size=len(g), replace=True), minlength=len(g))
    for batched, counts in zip(resample_counts(groups, 50, 5), loop):
        np.testing.assert_array_equal(batched, counts)
