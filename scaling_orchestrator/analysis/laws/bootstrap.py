"""Bootstrap intervals for any law form, resampling RUNS (Besiroglu et al. 2024, sec. 3).

A resample draws run ids with replacement; every row of a drawn run comes along (a run's
evaluations are not independent draws). A resample is therefore a weight per point (how many
times its run was drawn), so all resamples share one data set and differ only in a weight
matrix, and `batched_lbfgs` refits every resample at once.

Each resample is refitted to convergence, at the tolerances of the main fit, from the starts
the form names for it (`Form.refit_starts`: the full-data optimum, and for Chinchilla the other
local minima its fit found, at most 2, each within 3x the optimum's objective) plus the form's
`bootstrap_grid_starts` grid starts best on that resample. Why not a warm start at scipy's
default tolerances: it stops almost at once (the summed Huber gradient is already tiny there),
so the intervals collapse; reported on a synthetic law with 1.5% noise: alpha's 95% interval
0.336-0.341 that way, 0.315-0.394 refitted (truth 0.36). Why Chinchilla needs no grid starts:
the 8 grid starts best on each resample found nothing better than its optimum and runner-ups
and cost 12x as much. Measured, 1000 resamples each, CPU seconds on a busy 2-core machine:
Epoch's 240 points 0.97 s against 12.9 s, a 1000-run table (Chinchilla's law, 1% noise) 2.1 s
against 25.7 s; every resample's best objective agreed within 2e-11 relative, the 95%
intervals of E, A, B, alpha and beta within 2e-7 relative.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scaling_orchestrator.analysis.laws.cores import Later, can_fork
from scaling_orchestrator.analysis.laws.engine import MAX_ITERATIONS, run_batch


def run_weights(runs, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_points) multiplicities: runs drawn with replacement, rows follow runs."""
    _, run_of_point = np.unique(np.asarray(runs), return_inverse=True)
    n_runs = run_of_point.max() + 1
    draws = rng.integers(0, n_runs, size=(n_resamples, n_runs))
    flat = (np.arange(n_resamples)[:, None] * n_runs + draws).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_runs).reshape(n_resamples, n_runs)
    return counts[:, run_of_point].astype(float)


def refit_resamples(objective, weights, z_starts, grid, *, n_grid_starts: int, threads: int = 2):
    """Refit every resample (a weight row) from each row of z_starts (inner rows shared by
    every resample) and from the n_grid_starts grid starts best on that resample; returns
    (z (R, p), f (R,), converged (R,)) of each resample's best refit."""
    n_res, p = len(weights), z_starts.shape[1]
    starts = np.broadcast_to(z_starts, (n_res,) + z_starts.shape)
    n_best = min(n_grid_starts, len(grid))
    if n_best > 0:
        terms = objective.huber_terms(grid)
        score = weights @ np.where(np.isfinite(terms), terms, 1e300).T  # (R, k) in one matmul
        best = np.argpartition(score, n_best - 1, axis=1)[:, :n_best]
        starts = np.concatenate([starts, grid[best]], axis=1)
    per = starts.shape[1]
    result = run_batch(objective, starts.reshape(-1, p), np.repeat(weights, per, axis=0), threads,
                       MAX_ITERATIONS)
    f = np.where(np.isfinite(result.f), result.f, np.inf).reshape(n_res, per)
    pick = np.argmin(f, axis=1)
    chosen = np.arange(n_res) * per + pick
    return result.x[chosen], f[np.arange(n_res), pick], result.converged[chosen]


def interval(x: np.ndarray) -> list[float]:
    """2.5 and 97.5 percentiles over the resamples whose value is finite (a resample that drew
    too few distinct runs can leave a term unidentified: A or B overflows; they are counted
    in `n_degenerate`, not silently dropped)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_form(form, N, D, L, runs, U=None, **options) -> dict:
    """95% percentile intervals for the form's constants and for (N*, D*, L*) at target_flops
    (bootstrap_later's options and result, computed now)."""
    return bootstrap_later(form, N, D, L, runs, U, **options)()


def bootstrap_later(
    form,
    N,
    D,
    L,
    runs,
    U=None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    target_flops=(),
    fit=None,
    flops_per_token: Callable | None = None,
    delta: float = 1e-3,
    n_grid_starts: int | None = None,
    threads: int = 2,
    background: bool = False,
) -> Callable[[], dict]:
    """finish() -> the bootstrap: 95% percentile intervals for the form's constants and for
    (N*, D*, L*) at target_flops. fit: the full-data fit (fitted here when None); n_grid_starts:
    grid starts per resample (None: the form's bootstrap_grid_starts). background: the refits
    run in a forked child (laws/cores.py, Later) while the caller goes on until finish().

    finish() returns {"ci95": {name: [lo, hi]}, "samples": (R, p) array in form.constants
    order, "compute_optimal": [{"flops", "params_ci", "tokens_ci", "loss_ci"}], "fit": the
    full-data fit's params(), "n_resamples", "n_runs", "converged_fraction", "n_degenerate"}."""
    cols = form.columns(N, D, L, U)
    runs = np.asarray(runs)
    if runs.shape != cols.y.shape:
        raise ValueError(f"runs: {runs.shape[0] if runs.ndim else 0} ids for {len(cols)} points")
    if n_resamples < 2:
        raise ValueError(f"n_resamples={n_resamples}; allowed: >= 2")
    fit = fit or form.fit(N, D, L, U, delta=delta, threads=threads)
    frozen = list(form.frozen(cols, fit))
    z_starts = form.refit_starts(fit, cols)
    n_grid = form.bootstrap_grid_starts if n_grid_starts is None else n_grid_starts
    grid = np.array(form.starts(cols), dtype=float) if n_grid > 0 else np.empty((0, z_starts.shape[1]))
    grid[:, frozen] = z_starts[0, frozen]  # what the fit held fixed stays fixed
    weights = run_weights(runs, n_resamples, np.random.default_rng(seed))
    objective = form.objective(cols, delta, frozen)

    def refit(cores: int):
        return refit_resamples(objective, weights, z_starts, grid, n_grid_starts=n_grid, threads=cores)

    refits = Later(lambda: refit(1)) if background and can_fork() else None
    done = refit(threads) if refits is None else None

    def finish() -> dict:
        z, _, converged = refits.result() if refits is not None else done
        with np.errstate(over="ignore", invalid="ignore"):
            samples = form.to_outer(z, cols.frame)
        kept = form.finite_samples(samples)
        ci = {name: interval(samples[:, i]) for i, name in enumerate(form.constants)}
        optimal = [
            form.optimal_interval(kept, float(c), flops_per_token)
            for c in np.atleast_1d(np.asarray(target_flops, dtype=float))
        ]
        return {
            "ci95": ci,
            "samples": samples,
            "compute_optimal": optimal,
            "fit": fit.params(),
            "n_resamples": n_resamples,
            "n_runs": int(len(np.unique(runs))),
            "converged_fraction": float(np.mean(converged)),
            "n_degenerate": int(len(samples) - len(kept)),
        }

    return finish
