"""Hyperparameter scaling laws from the kind == "hparam" trials: lr*(N) and, where batch size
was searched, B*(C).

Per model size (the planner's `size_label` column, e.g. "d4", where every row has one; else
L<n_layer>xD<d_model>; else the parameter count), final loss is a bowl in log10(lr). As for
IsoFLOP profiles (Hoffmann et al. 2022, Sec. 3.2; Porian et al. 2024, App. C) the window
parabola of methods/parabola.py is fitted only through the `window` (default 5, at least 3)
distinct lrs nearest the best observed one. A size whose best lr is the smallest or largest lr TRIED (diverged
trials count as tried) is flagged `edge`: its vertex is an extrapolation and it stays out of
the law. Diverged trials (status "diverged", or a non-finite final loss) are loss = +inf: they
bound the bowl but are not fitted; failed trials are excluded. Both are counted.

Seeds at one (lr, batch) are averaged. Where several batch sizes were tried, the lr profile
is read at the size's best batch (the one with the lowest mean loss) and the batch profile is
the minimum over lr at each batch (lr is the nuisance there; each batch carries its own lr
sweep). The law lr*(N) = c N^p is OLS in log10-log10 over the interior sizes (the form
DeepSeek LLM, Bi et al. 2024 Sec. 3.1, fits over compute: lr = 0.3118 C^-0.125, batch =
0.292 C^0.3271). E.g. optima 3.0e-3 at N = 1e6 and 1.5e-3 at N = 8e6 give
p = log10(0.5) / log10(8) = -0.333.

Intervals come from a bootstrap over trials WITHIN each size (the size grid is the design,
the trials are the noise): every resample refits every size's parabola, and the same
resample's vertices give one (p, c) by OLS, so a size's interval and the law's share draws.
The parabola's curvature is reported but not used for intervals: with one trial per lr it
has no noise estimate of its own. A resample keeps about 63% of the distinct trials, so on a
sparse grid the interval is wide (measured: 7 lrs per size, 0.003 nats noise, 5 sizes over two
decades -> exponent 95% [-0.380, -0.282] around -0.340; truth -0.33). B*(C) is the same over compute: a size's
C is the median
of its trials' budget_flops, or 6 * params * tokens where that column is absent or empty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.methods.hparam_laws import (
    LAWS,
    HparamFit,
    HparamLaw,
    LrLaw,
    SizeOptimum,
    load_lr_law,
)
from scaling_orchestrator.analysis.methods.parabola import MIN_VALUES, WindowParabola, window_parabola
from scaling_orchestrator.analysis.methods.powerlaw import powerlaw_fit

__all__ = ["HparamFit", "HparamLaw", "LrLaw", "SizeOptimum", "fit_hparams", "load_lr_law", "split_kinds"]

HPARAM_KIND = "hparam"
DEFAULT_WINDOW = 5
MIN_SIZES = 2  # a power law needs two
NO_ROWS = "no hparam rows"


def split_kinds(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(scaling rows, hparam rows); a table without a `kind` column is all scaling rows."""
    if "kind" not in table.column_names:
        return table, table.slice(0, 0)
    kind = pc.fill_null(pc.cast(table.column("kind"), pa.string()), "scaling")
    return table.filter(pc.equal(kind, "scaling")), table.filter(pc.equal(kind, HPARAM_KIND))


@dataclass(frozen=True)
class SizeTrials:
    """One size's hparam trials, one entry per trial (its final evaluation)."""

    label: str
    params: float
    flops: float
    lr: np.ndarray
    batch_tokens: np.ndarray
    loss: np.ndarray  # +inf for diverged trials


def _column(table: pa.Table, name: str, default=np.nan) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, default, dtype=float)
    return pc.cast(table.column(name), pa.float64()).fill_null(np.nan).to_numpy()


def _strings(table: pa.Table, name: str) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    col = pc.cast(table.column(name), pa.string()).fill_null("")
    return np.asarray(col.to_pylist(), dtype=object)


def _final_trials(table: pa.Table) -> pa.Table:
    """One row per trial: its last final row (every row where the table has no `final`)."""
    if "final" in table.column_names:
        table = table.filter(pc.fill_null(table.column("final"), False))
    ids = _strings(table, "trial_id")
    if ids is None:
        return table
    last = {tid: i for i, tid in enumerate(ids)}  # a re-run's later row replaces the earlier
    return table.take(pa.array(sorted(last.values()), type=pa.int64()))


def _size_labels(table: pa.Table, params: np.ndarray) -> np.ndarray:
    """The planner's size_label ("d4") where every row has one; else L<n_layer>xD<d_model>
    (tables from elsewhere, or written before the column existed); else N=<params>."""
    labels = _strings(table, "size_label")
    if labels is not None and all(labels):
        return labels
    if {"n_layer", "d_model"} <= set(table.column_names):
        layers, width = _column(table, "n_layer"), _column(table, "d_model")
        if np.isfinite(layers).all() and np.isfinite(width).all():
            return np.array([f"L{int(a)}xD{int(b)}" for a, b in zip(layers, width)], dtype=object)
    return np.array([f"N={p:.4g}" for p in params], dtype=object)


def hparam_sizes(
    table: pa.Table, *, params: str = "params", loss: str = "val_loss"
) -> tuple[list[SizeTrials], dict, int]:
    """The hparam trials grouped by size, counts of what was excluded and why, and how many
    trials (final rows) there were."""
    _, table = split_kinds(table)
    table = _final_trials(table)
    if table.num_rows == 0:
        return [], {}, 0
    for name in ("lr", params, loss):
        if name not in table.column_names:
            raise ValueError(f"hparam rows: column {name!r} not found; columns are {table.column_names}")
    N, lr, L = _column(table, params), _column(table, "lr"), _column(table, loss)
    batch = _column(table, "batch_tokens")
    flops = _column(table, "budget_flops")
    flops = np.where(np.isfinite(flops) & (flops > 0), flops, 6.0 * N * _column(table, "tokens"))
    status = _strings(table, "status")
    status = np.full(len(L), "ok", dtype=object) if status is None else status
    failed = status == "failed"
    diverged = ~failed & ((status == "diverged") | ~np.isfinite(L))
    bad_x = ~failed & ~(np.isfinite(lr) & (lr > 0) & np.isfinite(N) & (N > 0))
    L = np.where(diverged, np.inf, L)
    labels, valid = _size_labels(table, N), ~failed & ~bad_x
    stopped = _stopped_early(labels, valid & ~diverged, _column(table, "tokens"))
    valid &= ~stopped
    sizes = []
    for label in sorted(set(labels[valid]), key=lambda s: np.median(N[valid & (labels == s)])):
        keep = (labels == label) & valid
        sizes.append(
            SizeTrials(
                str(label),
                float(np.median(N[keep])),
                float(np.nanmedian(flops[keep])) if np.isfinite(flops[keep]).any() else float("nan"),
                lr[keep],
                batch[keep],
                L[keep],
            )
        )
    counts = {
        "failed": int(failed.sum()),
        "diverged": int((diverged & ~bad_x).sum()),
        "missing lr or params": int(bad_x.sum()),
        "stopped early": int(stopped.sum()),
    }
    return sizes, {k: v for k, v in counts.items() if v}, table.num_rows


def _stopped_early(labels: np.ndarray, ran: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Trials an early-stopping scheduler (ASHA) cut: a final row at fewer tokens than the
    longest trial of its size (e.g. 250 against 1000). Its loss is not comparable, so it bounds
    nothing. ran: the trials that count (usable, not diverged)."""
    stopped = np.zeros(len(labels), dtype=bool)
    for label in set(labels[ran]):
        full = ran & (labels == label) & np.isfinite(tokens)
        if full.any():
            stopped |= full & (tokens < tokens[full].max())
    return stopped


def profile(x: np.ndarray, other: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct x values and the loss at each: seed means per (x, other), minimum over other."""
    other = np.where(np.isfinite(other), other, -1.0)
    pairs, inv = np.unique(np.stack([x, other], axis=1), axis=0, return_inverse=True)
    inv = inv.ravel()
    mean = np.bincount(inv, weights=loss) / np.bincount(inv)  # inf stays inf: unstable there
    ux, which = np.unique(pairs[:, 0], return_inverse=True)
    best = np.full(len(ux), np.inf)
    np.minimum.at(best, which.ravel(), mean)
    return ux, best


def vertex(ux: np.ndarray, prof: np.ndarray, window: int = DEFAULT_WINDOW) -> tuple[WindowParabola, bool]:
    """The window parabola in log10 x through the distinct values nearest the best profile
    loss, and whether that best sits at the grid's edge; raises NotFittable."""
    finite = np.isfinite(prof)
    lx, y = np.log10(ux[finite]), prof[finite]
    if len(lx) < MIN_VALUES:
        raise NotFittable(f"{len(lx)} distinct value(s) with a finite loss; a parabola needs {MIN_VALUES}")
    edge = ux[finite][int(np.argmin(y))] in (ux.min(), ux.max())  # diverged values count as tried
    fit = window_parabola(lx, y, window)
    if not fit.convex:
        raise NotFittable("loss is not convex in log of the hyperparameter")
    return fit, bool(edge)


def _axes(size: SizeTrials, name: str):
    """(x, other, loss) of the trials that inform `name`, x finite."""
    x, other = (size.lr, size.batch_tokens) if name == "lr" else (size.batch_tokens, size.lr)
    ok = np.isfinite(x)
    return x[ok], other[ok], size.loss[ok]


def _at_best_other(x, other, loss):
    """Trials at the `other` value (batch) of the lowest seed-mean loss, for the lr profile:
    a search that scales its lr grid with batch shares no lr across batches, so a minimum over
    batch at each lr would compare points from different bowls."""
    if len(np.unique(other[np.isfinite(other)])) < 2 or not np.isfinite(loss).any():
        return x, other, loss
    key = np.where(np.isfinite(other), other, -1.0)
    pairs, inv = np.unique(np.stack([x, key], axis=1), axis=0, return_inverse=True)
    mean = np.bincount(inv.ravel(), weights=loss) / np.bincount(inv.ravel())
    keep = key == pairs[int(np.argmin(mean)), 1]
    return x[keep], other[keep], loss[keep]


def _profile_of(x, other, loss, name: str):
    if name == "lr":
        x, other, loss = _at_best_other(x, other, loss)
    return profile(x, other, loss)


def _size_optimum(size: SizeTrials, name: str, window: int) -> SizeOptimum:
    x, other, loss = _axes(size, name)
    base = dict(
        label=size.label,
        params=size.params,
        flops=size.flops,
        n_trials=len(size.loss),
        n_diverged=int(np.isinf(size.loss).sum()),
    )
    if len(x) == 0:
        return SizeOptimum(**base, fittable=False, reason=f"no trial records {name}")
    if not np.isfinite(getattr(size, LAWS[name][1])):
        return SizeOptimum(
            **base, fittable=False, reason="no budget_flops or tokens to place this size in compute"
        )
    ux, prof = _profile_of(x, other, loss, name)
    observed = tuple((float(u), float(p)) for u, p in zip(ux, prof))
    try:
        fit, edge = vertex(ux, prof, window)
    except NotFittable as exc:
        return SizeOptimum(**base, fittable=False, reason=f"{name}: {exc}", observed=observed)
    return SizeOptimum(
        **base,
        fittable=True,
        value_opt=float(10.0**fit.x_opt),
        loss_opt=float(fit.y_opt),
        edge=edge,
        window=fit.window,
        curvature=float(fit.curvature),
        parabola=fit.coefficients,
        observed=observed,
    )


def _bootstrap_vertices(
    size: SizeTrials, name: str, window: int, n_resamples: int, rng: np.random.Generator, log_opt: float
) -> np.ndarray:
    """log10 x* per resample of the size's trials (NaN where a resample has no vertex).

    A vertex beyond the values the size tried is clipped to them: a resample that drops the
    trials on one side of the bowl extrapolates a flat parabola (seen: a vertex at 7.6x the
    true lr* from a grid that stops at 4x), and the data cannot place it outside the grid.
    The range is widened to the full-data vertex log_opt, which an edge size has outside."""
    x, other, loss = _axes(size, name)
    out = np.full(n_resamples, np.nan)
    for r in range(n_resamples):
        take = rng.integers(0, len(x), len(x))
        try:
            out[r] = vertex(*_profile_of(x[take], other[take], loss[take], name), window)[0].x_opt
        except (NotFittable, np.linalg.LinAlgError, ValueError):
            continue
    lo, hi = np.log10(x.min()), np.log10(x.max())
    return np.clip(out, min(lo, log_opt), max(hi, log_opt))


def _law_samples(xs: np.ndarray, log_opt: np.ndarray) -> np.ndarray:
    """(exponent, coefficient) per resample column with 2+ distinct finite sizes."""
    rows = []
    for col in log_opt.T:
        ok = np.isfinite(col)
        if len(np.unique(xs[ok])) >= MIN_SIZES:
            slope, icpt = np.polyfit(np.log10(xs[ok]), col[ok], 1)
            rows.append((slope, 10.0**icpt))
    return np.asarray(rows, dtype=float).reshape(-1, 2)


def fit_law(
    sizes: list[SizeTrials],
    name: str,
    *,
    window: int = DEFAULT_WINDOW,
    n_bootstrap: int = 1000,
    seed: int = 0,
    excluded: dict | None = None,
) -> HparamLaw:
    """One size optimum per size along `name`, then value*(x) = c x^p over the interior ones."""
    against, excluded = LAWS[name][1], dict(excluded or {})
    optima = [_size_optimum(s, name, window) for s in sizes]
    used = [i for i, o in enumerate(optima) if o.fittable and not o.edge]
    rng = np.random.default_rng(seed)
    logs = np.full((len(sizes), max(n_bootstrap, 0)), np.nan)
    for i, o in enumerate(optima):
        if o.fittable and n_bootstrap > 0:
            logs[i] = _bootstrap_vertices(sizes[i], name, window, n_bootstrap, rng, np.log10(o.value_opt))
            if np.isfinite(logs[i]).sum() >= 10:
                optima[i] = _with_ci(o, np.nanpercentile(10.0 ** logs[i], [2.5, 97.5]))
    xs = np.array([getattr(optima[i], against) for i in used], dtype=float)
    if len(np.unique(xs)) < MIN_SIZES:
        edges = sum(o.fittable and o.edge for o in optima)
        return HparamLaw(
            name,
            False,
            f"{len(used)} size(s) with an interior {name} optimum "
            f"({edges} at the edge of the grid, {len(optima) - len(used) - edges} "
            f"not fittable); a power law in {against} needs {MIN_SIZES}",
            optima=tuple(optima),
            excluded=excluded,
        )
    exponent, coefficient = powerlaw_fit(xs, [optima[i].value_opt for i in used])
    samples, ci95 = None, {}
    if n_bootstrap > 0:
        samples = _law_samples(xs, logs[used])
        if len(samples) >= 10:
            lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
            ci95 = {"exponent": [float(lo[0]), float(hi[0])], "coefficient": [float(lo[1]), float(hi[1])]}
    return HparamLaw(name, True, "", coefficient, exponent, ci95, tuple(optima), samples, excluded)


def _with_ci(o: SizeOptimum, ci) -> SizeOptimum:
    return replace(o, ci95=(float(ci[0]), float(ci[1])))


def fit_hparams(
    table: pa.Table | None,
    *,
    params: str = "params",
    loss: str = "val_loss",
    window: int = DEFAULT_WINDOW,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> HparamFit:
    """lr*(N) and, where batch_tokens was searched, B*(C) from the table's hparam rows."""
    if window < MIN_VALUES:
        raise ValueError(f"window={window}: must be at least {MIN_VALUES}")
    sizes, excluded, n_trials = (
        ([], {}, 0) if table is None else hparam_sizes(table, params=params, loss=loss)
    )
    if not sizes:
        reason = NO_ROWS if n_trials == 0 else f"none of the {n_trials} hparam trials is usable"
        return HparamFit(
            HparamLaw("lr", False, reason, excluded=excluded),
            HparamLaw("batch_tokens", False, reason, excluded=excluded),
            n_trials,
        )
    lr = fit_law(sizes, "lr", window=window, n_bootstrap=n_bootstrap, seed=seed, excluded=excluded)
    searched = [s for s in sizes if len(np.unique(s.batch_tokens[np.isfinite(s.batch_tokens)])) > 1]
    if not searched:
        batch = HparamLaw(
            "batch_tokens", False, "batch_tokens was not searched (one value per size)", excluded=excluded
        )
    else:
        batch = fit_law(
            searched, "batch_tokens", window=window, n_bootstrap=n_bootstrap, seed=seed + 1, excluded=excluded
        )
    return HparamFit(lr, batch, n_trials)
