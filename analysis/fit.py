"""Every method on one table, assembled into the `scaling fit --json` structure (DESIGN.md).

A method that cannot run is present as {"fittable": false, "reason": "..."}; it never
vanishes, so a reader can tell "not attempted" from "not possible on this data".

Default targets: when none are given, the largest observed budget and 10x it, so the
recommendation table always shows an interpolation and a one-decade extrapolation.
Per method, compute_optimal reads:
- parametric: argmin over N of L(N, C / fpt(N)) with fpt read off the table (6N under 6ND,
  the exact per-token count otherwise); ci95 from the run bootstrap.
- isoflop / envelope: N* = k C^a, D* = k' C^b; loss = E + A C^-alpha fitted to that method's
  own minima (parabola vertices / envelope); ci95 for N*, D* from the within-budget run
  bootstrap (isoflop only), loss interval not estimated (null).
Hyperparameter laws (analysis/hparams.py) come from the kind == "hparam" trials only, and the
scaling methods from the other runs only: "lr_law" and "batch_law" are always present, as
{"fittable": false, "reason": "no hparam rows"} when the source has none.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from analysis.backtest import DEFAULT_THRESHOLD, _Subset, flops_per_token_model, run_backtest
from analysis.envelope import fit_envelope, has_curves
from analysis.hparams import fit_hparams
from analysis.isoflop import NotFittable, final_rows, fit_isoflop
from analysis.kaplan import fit_frontier, fit_kaplan
from analysis.parametric import fit_parametric, optimal_6nd

EXPONENT_NAMES = ("a", "b")
METHODS = ("parametric", "isoflop", "envelope")


def to_plain(x):
    """numpy -> Python, non-finite floats -> None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [to_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def not_fittable(exc: Exception) -> dict:
    return {"fittable": False, "reason": str(exc)}


def select(points, mask):
    """The rows of points where mask is True (Points.select, or a _Subset for stand-ins)."""
    if hasattr(points, "select"):
        return points.select(mask)
    sub = _Subset(points, np.flatnonzero(mask))
    sub.excluded, sub.source = dict(points.excluded), points.source
    return sub


def clean(points) -> tuple[object, int]:
    """Drop rows whose N, D, C or loss is non-finite or <= 0; return (points, dropped)."""
    arrays = [np.asarray(getattr(points, k), float) for k in ("params", "tokens", "flops", "loss")]
    ok = np.logical_and.reduce([np.isfinite(a) & (a > 0) for a in arrays])
    ok &= np.isfinite(np.asarray(points.budget, float))
    return (points, 0) if ok.all() else (select(points, ok), int((~ok).sum()))


def fit_all(points, *, curves=None, table=None, params_column: str = "params",
            loss_column: str = "val_loss", target_flops=(), n_bootstrap: int = 1000,
            seed: int = 0, window: int = 5, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Fit parametric, IsoFLOP, envelope and Kaplan laws, back-test, and recommend (N*, D*);
    fit lr*(N) and B*(C) from the hparam trials.

    points: one row per run (or curves with `final` flags), None when the source has only
    hparam rows; curves: optionally every evaluation (load_points(curves=True)) for the
    envelope; default: `points` itself. table: the source's rows of every kind (pa.Table),
    default read from points.source when that is a path: its kind == "hparam" trials feed
    "lr_law" / "batch_law" (params_column, loss_column name N and L there), and runs it marks
    as not "scaling" are dropped from `points`, since load_points does not filter on kind."""
    table = source_table(points) if table is None else table
    hp = fit_hparams(table, params=params_column, loss=loss_column, window=window,
                     n_bootstrap=n_bootstrap, seed=seed)
    points, n_other = scaling_only(points, table)
    curves = scaling_only(curves, table)[0] if curves is not None else None
    if points is not None:
        points, dropped = clean(points)
    if points is None or len(final_rows(points)) == 0:
        if hp.n_trials == 0:
            raise ValueError("loss: no finite, positive final points to fit")
        out = _no_scaling(points, table, target_flops, hp.n_trials)
        return to_plain({**out, **hp.to_dict()})
    out = _fit_scaling(points, curves, dropped, target_flops, n_bootstrap, seed, window,
                       threshold, table)
    if n_other:
        out["data"]["excluded"]["kind not scaling"] = n_other
    out["data"]["n_hparam_trials"] = hp.n_trials
    out.update(hp.to_dict())
    return to_plain(out)


def _fit_scaling(points, curves, dropped, target_flops, n_bootstrap, seed, window, threshold,
                 table) -> dict:
    curves = points if curves is None else clean(curves)[0]
    rows = final_rows(points)
    budgets = np.unique(np.asarray(points.budget, float)[rows])
    targets = _targets(target_flops) or [float(budgets[-1]), float(10 * budgets[-1])]
    out = {"data": _data_section(points, rows, budgets, dropped, table)}
    out["data"]["training_curves"] = bool(has_curves(curves))
    law, boot = _parametric(points, rows, targets, n_bootstrap, seed, out)
    iso = _method(out, "isoflop", lambda: fit_isoflop(points, window=window,
                                                      n_bootstrap=n_bootstrap, seed=seed))
    env = _method(out, "envelope", lambda: fit_envelope(curves))
    out["kaplan"] = fit_kaplan(points)
    try:
        out["backtest"] = run_backtest(points, threshold=threshold, window=window)
    except (NotFittable, ValueError) as exc:
        out["backtest"] = not_fittable(exc)
    fpt = flops_per_token_model(points)
    out["compute_optimal"] = [
        *_parametric_optimal(law, boot, targets, fpt),
        *_law_optimal("isoflop", iso, targets), *_law_optimal("envelope", env, targets)]
    _unfit_targets(out, targets)
    grid = band_grid(budgets, targets)
    out["frontier_grid"] = {"parametric": _parametric_optimal(law, boot, grid, fpt, band=True),
                            "isoflop": _law_optimal("isoflop", iso, grid),
                            "envelope": _law_optimal("envelope", env, grid)}
    out["disagreement"] = disagreement(out)
    return out


def _targets(target_flops) -> list[float]:
    targets = [float(c) for c in target_flops]
    bad = [c for c in targets if not (math.isfinite(c) and c > 0)]
    if bad:
        raise ValueError(f"target_flops: {bad[0]!r} is not a finite positive FLOP count")
    return targets


def _unfit_targets(out: dict, targets) -> None:
    for method in ("parametric", "isoflop", "envelope"):  # a method that cannot run says why
        if not out[method].get("fittable", False):
            out["compute_optimal"] += [{"flops": c, "method": method, "fittable": False,
                                        "reason": out[method]["reason"]} for c in targets]


def _no_scaling(points, table, target_flops, n_hparam_trials: int) -> dict:
    """Every scaling section present and not fittable: the source holds only hparam trials."""
    unfit = {"fittable": False, "reason": "no scaling rows to fit (kind 'scaling', final, "
                                          "status ok, finite positive loss)"}
    excluded = dict(getattr(points, "excluded", {}) or {})
    out = {"data": {"source": str(getattr(points, "source", "") or ""), "n_rows": 0,
                    "n_final_points": 0, "n_runs": 0, "n_budgets": 0, "budgets": [],
                    "excluded": excluded, "excluded_trials": excluded_trials(table),
                    "training_curves": False, "n_hparam_trials": n_hparam_trials},
           "kaplan": {k: dict(unfit) for k in ("L_of_N", "L_of_D", "frontier")},
           "compute_optimal": [], "frontier_grid": {m: [] for m in METHODS}}
    out.update({m: dict(unfit) for m in (*METHODS, "backtest")})
    _unfit_targets(out, _targets(target_flops))
    out["disagreement"] = disagreement(out)
    return out


def source_table(points):
    """The table behind points.source when that is a readable path, else None."""
    source = getattr(points, "source", "")
    if not isinstance(source, str) or not source or not Path(source).exists():
        return None
    try:
        from analysis.load import load_table
        return load_table(source)
    except Exception:  # noqa: BLE001 - optional context; the fit already loaded its points
        return None


def scaling_only(points, table) -> tuple[object, int]:
    """points without the rows of runs `table` marks kind != "scaling"; (points, dropped)."""
    if points is None or table is None or not {"kind", "trial_id"} <= set(table.column_names):
        return points, 0
    kinds, ids = (table.column(c).to_pylist() for c in ("kind", "trial_id"))
    sweeps = (table.column("sweep").to_pylist() if "sweep" in table.column_names
              else [None] * len(ids))
    other = {t for k, t in zip(kinds, ids) if k not in (None, "scaling")}
    other |= {f"{w}/{t}" for k, t, w in zip(kinds, ids, sweeps) if k not in (None, "scaling")}
    mask = ~np.isin(np.asarray(points.run).astype(str), sorted(other))
    return (points, 0) if mask.all() else (select(points, mask), int((~mask).sum()))


def band_grid(budgets, targets, n: int = 12) -> list[float]:
    """Log-spaced FLOP values from the smallest budget to the largest target, for plots."""
    lo, hi = math.log10(min(budgets)), math.log10(max(max(targets), max(budgets)))
    return [float(10 ** x) for x in np.linspace(lo, hi, n)]


def _method(out: dict, name: str, fit):
    try:
        result = fit()
    except (NotFittable, ValueError) as exc:
        out[name] = not_fittable(exc)
        return None
    out[name] = result.to_dict()
    return result


def _data_section(points, rows, budgets, dropped, table) -> dict:
    excluded = dict(getattr(points, "excluded", {}) or {})
    if dropped:
        excluded["non-finite or non-positive"] = excluded.get("non-finite or non-positive", 0) + dropped
    return {"source": str(getattr(points, "source", "")), "n_rows": int(len(points.loss)),
            "n_final_points": int(len(rows)),
            "n_runs": int(len(np.unique(np.asarray(points.run)[rows]))),
            "n_budgets": int(len(budgets)), "budgets": [float(b) for b in budgets],
            "excluded": excluded, "excluded_trials": excluded_trials(table)}


def excluded_trials(table) -> dict:
    """status -> trial ids for diverged/failed trials, when the source table records them."""
    if table is None or not {"status", "trial_id"} <= set(table.column_names):
        return {}
    out: dict[str, list[str]] = {}
    for status, trial in zip(table.column("status").to_pylist(), table.column("trial_id").to_pylist()):
        if status in ("diverged", "failed") and trial not in out.setdefault(status, []):
            out[status].append(trial)
    return out


def _parametric(points, rows, targets, n_bootstrap, seed, out):
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    try:
        law = fit_parametric(N, D, L)
    except (NotFittable, ValueError) as exc:
        out["parametric"] = not_fittable(exc)
        return None, None
    section = {"fittable": True, **law.params()}
    total = law.alpha + law.beta
    # Chinchilla Eq. 4: N* ~ C^(beta/(alpha+beta)), D* ~ C^(alpha/(alpha+beta))
    section["a"] = law.beta / total if total > 0 else None
    section["b"] = law.alpha / total if total > 0 else None
    boot = None
    if n_bootstrap > 0:
        from analysis.bootstrap import bootstrap_parametric
        boot = bootstrap_parametric(N, D, L, np.asarray(points.run)[rows], n_resamples=n_bootstrap,
                                    seed=seed, target_flops=tuple(targets), fit=law,
                                    flops_per_token=flops_per_token_model(points))
        section["ci95"] = {k: list(v) for k, v in boot["ci95"].items()}
        section["ci95"].update(_exponent_ci(boot.get("samples")))
    else:
        section["ci95"] = {}
    out["parametric"] = section
    return law, boot


def _exponent_ci(samples) -> dict:
    """a, b intervals from bootstrap rows (E, A, B, alpha, beta)."""
    s = np.asarray(samples if samples is not None else [], float)
    if s.ndim != 2 or s.shape[1] < 5 or len(s) < 10:
        return {}
    alpha, beta = s[:, 3], s[:, 4]
    ok = np.isfinite(alpha + beta) & (alpha + beta > 0)
    a = beta[ok] / (alpha[ok] + beta[ok])
    return {"a": list(np.percentile(a, [2.5, 97.5])), "b": list(np.percentile(1 - a, [2.5, 97.5]))}


def _parametric_optimal(law, boot, targets, fpt, *, band: bool = False) -> list[dict]:
    """Targets take the bootstrap's intervals (in the table's FLOP convention); the plot band
    (band=True) reads Chinchilla Eq. 4 under 6ND on the same samples, vectorised."""
    if law is None:
        return []
    if not (law.alpha > 0 and law.beta > 0):   # Eq. 4 divides by alpha and beta
        reason = (f"fitted alpha = {law.alpha:.3g}, beta = {law.beta:.3g}: with an exponent at 0 "
                  "the law has no compute-optimal trade-off")
        return [{"flops": C, "method": "parametric", "fittable": False, "reason": reason}
                for C in targets]
    cis = {round(math.log10(c["flops"]), 6): c for c in (boot or {}).get("compute_optimal", [])}
    out = []
    for C in targets:
        n, d, loss = (float(np.asarray(v).ravel()[0]) for v in law.compute_optimal(C, fpt))
        ci = cis.get(round(math.log10(C), 6), {})
        if band and boot is not None:
            E, A, B, alpha, beta = np.asarray(boot["samples"], float).T
            n_s, d_s = optimal_6nd(A, B, alpha, beta, C)
            ci = {"params_ci": list(np.nanpercentile(n_s, [2.5, 97.5])),
                  "tokens_ci": list(np.nanpercentile(d_s, [2.5, 97.5]))}
        out.append({"flops": C, "method": "parametric", "params": n, "tokens": d, "loss": loss,
                    "ci95": {"params": ci.get("params_ci"), "tokens": ci.get("tokens_ci"),
                             "loss": ci.get("loss_ci")}})
    return out


def _law_optimal(method: str, fit, targets) -> list[dict]:
    if fit is None:
        return []
    if method == "isoflop":
        minima = [(o.flops, o.loss_opt) for o in fit.budgets if o.fittable]
    else:
        minima = list(zip(fit.grid_flops[fit.used], fit.loss[fit.used]))
    try:
        frontier = fit_frontier(*map(np.array, zip(*minima)))
    except (NotFittable, ValueError):
        frontier = None
    samples = getattr(fit, "samples", None)
    out = []
    for C in targets:
        ci = {"params": None, "tokens": None, "loss": None}
        if samples is not None and len(samples) >= 10:
            ci["params"] = list(np.percentile(samples[:, 2] * C ** samples[:, 0], [2.5, 97.5]))
            ci["tokens"] = list(np.percentile(samples[:, 3] * C ** samples[:, 1], [2.5, 97.5]))
        out.append({"flops": C, "method": method, "params": float(fit.params_opt(C)),
                    "tokens": float(fit.tokens_opt(C)),
                    "loss": None if frontier is None else float(frontier.predict(C)), "ci95": ci})
    return out


def disagreement(result: dict) -> dict:
    """a and b side by side per approach; flag when the available 95% intervals share no point."""
    out = {}
    for name in EXPONENT_NAMES:
        rows, intervals = {}, []
        for method in ("parametric", "isoflop", "envelope"):
            sec = result.get(method, {})
            if not sec.get("fittable", False):
                continue
            ci = sec.get("ci95", {}).get(name)
            rows[method] = {"value": sec[name], "ci95": ci}
            if ci is not None:
                intervals.append(ci)
        overlap = (max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals)
                   if len(intervals) >= 2 else None)
        out[name] = {"methods": rows, "intervals_overlap": overlap, "flag": overlap is False}
    out["flag"] = any(out[n]["flag"] for n in EXPONENT_NAMES)
    return out
