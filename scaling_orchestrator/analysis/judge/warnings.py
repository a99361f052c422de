"""The warnings a reader needs before trusting a fit: each a sentence with its numbers.

Read off the `scaling fit --json` structure (FitResult.to_dict()), the headline rows and the
final points, so a captured fit.json can be checked without refitting. A clean fit has none:
Epoch's 240 Chinchilla points raise nothing (tests/test_headline.py).
"""

from __future__ import annotations

import math

import numpy as np

from scaling_orchestrator.analysis.judge.forecast import DEFAULT_PARAMS_THRESHOLD, DEFAULT_THRESHOLD
from scaling_orchestrator.analysis.judge.headline import (
    CONFIDENT_EXTRAPOLATION,
    degenerate,
    fmt,
    miss_text,
    span,
)

WIDE_SPAN = 100.0     # a constant's 95% interval spanning more than this: not identified
# Under 0.5% of L* gained over the targets' whole span (100x in compute by default) is a flat
# frontier: Kaplan et al.'s L ~ C^-0.050 falls 11% per decade (10^-0.05 = 0.89).
FLAT_GAIN = 0.005
# Resamples whose law overflowed, above this share of the bootstrap, are worth a sentence.
DEGENERATE_SHARE = 0.05


def trained_range(points) -> dict:
    """The N and D range of the final points, and the best loss seen up to each FLOP count."""
    final = np.asarray(points.final, bool)
    rows = final if final.any() else np.ones(len(points.loss), bool)
    N, D = np.asarray(points.params, float)[rows], np.asarray(points.tokens, float)[rows]
    C, L = np.asarray(points.flops, float)[rows], np.asarray(points.loss, float)[rows]
    order = np.argsort(C)
    return {"params": (float(N.min()), float(N.max())), "tokens": (float(D.min()), float(D.max())),
            "flops": C[order], "loss": L[order]}


def best_observed_below(covered: dict, flops: float) -> tuple[float, float] | None:
    """(lowest loss observed at <= flops, the FLOPs of that run) or None."""
    seen = covered["flops"] <= flops
    if not seen.any():
        return None
    i = int(np.argmin(np.where(seen, covered["loss"], np.inf)))
    return float(covered["loss"][i]), float(covered["flops"][i])


def warnings_for(result: dict, points, headline: list[dict], *, window: int = 5,
                 degenerate_resamples: tuple[int, int] = (0, 0)) -> list[str]:
    """Every warning that applies. result: the to_dict() structure; headline: its rows."""
    if points is None or not len(points.loss):
        return []
    covered = trained_range(points)
    return (_parameter_warnings(result, degenerate_resamples)
            + _range_warnings(headline, covered)
            + _disagreement_warnings(result, _thresholds(result))
            + _frontier_warnings(result, covered)
            + _window_warnings(result, window)
            + _backtest_warnings(result, headline)
            + _curve_warnings(result))


def _curve_warnings(result: dict) -> list[str]:
    """The curve method left each run's first evaluations out (methods/curve.py start_share)."""
    curve = result.get("curve") or {}
    if not curve.get("fittable") or not curve.get("start_share"):
        return []
    return [f"The curve method read its runs' {curve['start']}. Its answer rests on the later part "
            "of each curve; compare it with the parametric law on the final points."]


def _thresholds(result: dict) -> dict:
    bt = result.get("backtest", {})
    return {"loss": bt.get("threshold") or DEFAULT_THRESHOLD,
            "params": bt.get("params_threshold") or DEFAULT_PARAMS_THRESHOLD}


def _parameter_warnings(result: dict, resamples: tuple[int, int]) -> list[str]:
    """A degenerate law, constants the runs do not identify, resamples that overflowed.
    (Kaplan's far-off N_c, D_c are said beside them in the report: they describe the data and
    the recommendation does not rest on them.)"""
    out = []
    if degenerate(result):
        out.append(f"The parametric fit is degenerate: {'; '.join(degenerate(result))}. A term "
                   "that vanishes within the data, or a loss floor the runs do not pin, makes "
                   "its extrapolations mean little.")
    par = result.get("parametric", {})
    constants = [k for k in par.get("ci95", {}) if k not in ("a", "b")]   # the form's own
    wide = [(name, par["ci95"][name], span(par["ci95"][name])) for name in constants
            if par.get("fittable") and (span(par["ci95"][name]) or 0) > WIDE_SPAN]
    if wide:
        names = _and(n for n, _, _ in wide)
        spans = "; ".join(f"{n} [{fmt(ci[0])}, {fmt(ci[1])}], {_times(r)}" for n, ci, r in wide)
        out.append(f"The parametric {names} are not identified by these runs: their 95% "
                   f"intervals span more than {WIDE_SPAN:.0f}x ({spans}). Read the law through "
                   "its recommendations' intervals, not its constants.")
    n_bad, n_all = resamples
    if n_all and n_bad / n_all > DEGENERATE_SHARE:
        out.append(f"In {n_bad} of {n_all} bootstrap resamples the parametric law overflowed "
                   "(a term's constant ran to infinity); its intervals come from the other "
                   f"{n_all - n_bad}.")
    return out


def _times(ratio: float) -> str:
    return "without bound" if math.isinf(ratio) else f"{fmt(ratio, 2)}x"


def _range_warnings(headline: list[dict], covered: dict) -> list[str]:
    """N* or D* below the smallest trained (a larger budget asking for a smaller model than any
    tried), or more than CONFIDENT_EXTRAPOLATION beyond the largest; one sentence per kind."""
    out, top = [], float(covered["flops"].max())
    for key, what in (("params", "N*"), ("tokens", "D*")):
        lo, hi = covered[key]
        below = [(r["flops"], lo / r[key]) for r in headline
                 if r.get(key) and r[key] < lo and r["flops"] >= top]
        above = [(r["flops"], r[key] / hi) for r in headline
                 if r.get(key) and r[key] > CONFIDENT_EXTRAPOLATION * hi]
        if below:
            out.append(f"The recommended {what} is below the smallest trained ({fmt(lo)}) at "
                       f"{_where(below)}: a larger budget should not want less than any run "
                       "tried; the fit does not describe these runs.")
        if above:
            out.append(f"The recommended {what} is more than {CONFIDENT_EXTRAPOLATION:.0f}x the "
                       f"largest trained ({fmt(hi)}) at {_where(above)}: an extrapolation past "
                       "what these runs can vouch for.")
    return out


def _where(hits) -> str:
    """'2.4e+13 and 2.4e+14 FLOPs (15x and 260x)'."""
    return (f"{_and(fmt(c) for c, _ in hits)} FLOPs "
            f"({_and(f'{fmt(x, 2)}x' for _, x in hits)})")


def _rows_at(result: dict, flops: float) -> dict:
    return {r["method"]: r for r in result.get("compute_optimal", [])
            if r.get("fittable", True) and math.isclose(r["flops"], flops, rel_tol=1e-9)}


def gap(a, ci_a, b, ci_b) -> float | None:
    """How far apart two estimates are beyond their 95% intervals, relative: (lower end of the
    higher - upper end of the lower) / the higher's lower end; an estimate without an
    interval counts as its point. None or <= 0 when they overlap. E.g. L* 3.774 (no interval)
    against [3.175, 3.563]: (3.774 - 3.563) / 3.774 = 5.6%."""
    if a is None or b is None:
        return None
    lo_a, hi_a = ci_a if ci_a and None not in ci_a else (a, a)
    lo_b, hi_b = ci_b if ci_b and None not in ci_b else (b, b)
    if lo_a > hi_b:
        return (lo_a - hi_b) / lo_a
    if lo_b > hi_a:
        return (lo_b - hi_a) / lo_b
    return None


def _disagreement_warnings(result: dict, thresholds: dict) -> list[str]:
    """Methods whose N* or L* lie apart beyond their intervals by more than the back-test
    accepts as a hit (25% for N*, 3% for L*): two forecasts that close would both pass, so the
    gap is not one a reader could act on. One sentence per quantity, numbers at the largest
    target where it occurs."""
    out = []
    targets = sorted({r["flops"] for r in result.get("compute_optimal", [])})
    for key, what, digits in (("params", "N*", 3), ("loss", "L*", 4)):
        hits = {}
        for C in targets:
            rows = _rows_at(result, C)
            names = list(rows)
            pairs = [(m1, m2) for i, m1 in enumerate(names) for m2 in names[i + 1:]
                     if (gap(rows[m1].get(key), (rows[m1].get("ci95") or {}).get(key),
                             rows[m2].get(key), (rows[m2].get("ci95") or {}).get(key))
                         or 0) > thresholds[key]]
            if pairs:
                hits[C] = (rows, pairs)
        if not hits:
            continue
        C = max(hits)
        rows, pairs = hits[C]
        values = ", ".join(f"{m} {fmt(r.get(key), digits)}"
                           + _ci_text((r.get("ci95") or {}).get(key), digits)
                           for m, r in rows.items() if r.get(key) is not None)
        out.append(f"The methods' {what} disagree beyond their 95% intervals, by more than the "
                   f"back-test's {100 * thresholds[key]:.0f}%, at "
                   f"{_and(fmt(c) for c in sorted(hits))} FLOPs ({values} at {fmt(C)}; "
                   f"{_and(f'{a} vs {b}' for a, b in pairs)}).")
    return out


def _ci_text(ci, digits) -> str:
    return "" if not ci or None in ci else f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _frontier_warnings(result: dict, covered: dict) -> list[str]:
    """A method's L* at a target above a loss already measured with less compute, and a
    frontier that barely falls over the targets."""
    out = []
    for method in ("parametric", "isoflop", "envelope"):
        rows = sorted((r for r in result.get("compute_optimal", []) if r["method"] == method
                       and r.get("fittable", True) and r.get("loss") is not None),
                      key=lambda r: r["flops"])
        above = [(r, best_observed_below(covered, r["flops"])) for r in rows]
        above = [(r, seen) for r, seen in above if seen and r["loss"] > seen[0]]
        if not above:
            continue
        r, seen = above[0]
        text = (f"The {method} L* {fmt(r['loss'], 4)} at {fmt(r['flops'])} FLOPs is above the "
                f"loss {fmt(seen[0], 4)} already measured at {fmt(seen[1])} FLOPs")
        gain = (rows[0]["loss"] - rows[-1]["loss"]) / rows[0]["loss"]
        if len(rows) > 1 and gain < FLAT_GAIN:
            text += (f", and it falls only {100 * gain:.1f}% from {fmt(rows[0]['flops'])} to "
                     f"{fmt(rows[-1]['flops'])} FLOPs")
        out.append(text + ": that frontier does not describe these runs there.")
    return out


def _window_warnings(result: dict, window: int) -> list[str]:
    """When most budgets in the N*(C) power law have fewer points than the window: their
    parabolas then run through every point, walls included. (A few short budgets among many,
    as in Epoch's Chinchilla points, barely move the power law.)"""
    iso = result.get("isoflop", {})
    used = [b for b in iso.get("budgets", []) if b.get("fittable") and not b.get("edge")]
    short = [b for b in used if b["n_points"] < window]
    if not used or 2 * len(short) <= len(used):
        return []
    counts = sorted({b["n_points"] for b in short})
    return [f"{len(short)} of the {len(used)} budgets in the IsoFLOP power law have "
            f"{' or '.join(map(str, counts))} points, fewer than its {window}-point window: "
            "each parabola runs through all of them, so the valley's walls, not just its "
            "floor, place the vertex. Train more sizes per budget to tighten N*."]


def _backtest_warnings(result: dict, headline: list[dict]) -> list[str]:
    """The headline method's back-test, when it did not pass (other methods' misses are in
    the back-test section: the reader is not asked to trust those)."""
    bt = result.get("backtest", {})
    if not bt.get("fittable") or not headline:
        return []
    method = headline[0]["method"]
    summary = bt.get("methods", {}).get(method)
    if summary is None or summary["passed"]:
        return []
    state = {1: "held where it could be judged, but not everywhere", 2: "missed",
             3: "could judge nothing"}[summary["tier"]]
    return [f"The back-test of the headline method ({method}) {state}: {miss_text(summary)}."]
