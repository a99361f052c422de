"""`scaling fit CURVES --step COL --lr COL ...` and `scaling predict FIT CURVES --step COL --lr COL`:
the schedule-aware curve laws (analysis/laws/curves) on any table of logged steps.

A fit or predict given --lr (or --step) reads its source as curves: one row per logged step of
a run, the LR integrated over steps by the trapezoid rule from LR 0 at step 0. `--params` names
a size column; without one the runs are one size. `--law lr_annealing | multi_power | auto`
(default multi_power); auto picks the law and a burn-in by the error on a held-out schedule or
held-out run tails, and says which (analysis/laws/curves/fit.py).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa

from scaling_orchestrator.analysis.data.load import load_table
from scaling_orchestrator.analysis.laws.curves.fit import AUTO, CURVE_LAWS, CurveFit, fit_curves
from scaling_orchestrator.analysis.laws.curves.tables import foreign_curves
from scaling_orchestrator.analysis.numerics import write_json
from scaling_orchestrator.analysis.predict import write_table

DEFAULT_LAW = "multi_power"
MAX_BOOTSTRAP = 200   # a multi_power refit per resample: 200 take about a minute on 2 cores


def add_flags(p: argparse.ArgumentParser, *, predict: bool = False) -> None:
    """--step and --lr (and, for predict, --run): present, they make the source a curve table."""
    p.add_argument("--step", metavar="COL", help="curves: optimizer-step column (one row per logged step)")
    p.add_argument("--lr", metavar="COL", help="curves: learning-rate column; with --step the source is "
                   "curves and the law a curve law: lr_annealing, multi_power or auto")
    if not predict:
        p.add_argument("--curve-law", metavar="NAME", help="the curve method on our own rows: lr_annealing, "
                       "multi_power, auto or none (default: auto where the rows hold trunks)")
        p.add_argument("--burn-in", type=float, metavar="SHARE", help="curves: leave out each run's "
                       "evaluations before this share of its steps (0 <= SHARE < 1; auto chooses its own)")
    if predict:
        p.add_argument("--run", default="trial_id", help="curves: run id column (default: trial_id)")


def wanted(args) -> bool:
    return bool(getattr(args, "lr", None) or getattr(args, "step", None))


def _source_columns(args, table: pa.Table, *, loss: bool) -> dict:
    if not (args.step and args.lr):
        raise ValueError("curves need both --step COL and --lr COL")
    params = args.params if args.params in table.column_names else None
    if args.params != "params" and params is None:
        raise ValueError(f"--params: no column {args.params!r}")
    return dict(run=args.run, step=args.step, lr=args.lr, loss=args.loss if loss else None, params=params)


def run_fit(args) -> int:
    law = args.law or DEFAULT_LAW
    if law not in CURVE_LAWS + (AUTO,):
        raise ValueError(f"--law {law}: a curve fit takes {', '.join(CURVE_LAWS)} or auto")
    table = load_table(args.source)
    curves = foreign_curves(table, **_source_columns(args, table, loss=True))
    resamples = min(max(args.bootstrap, 0), MAX_BOOTSTRAP)
    fitted = fit_curves(curves, law, n_bootstrap=resamples, seed=args.seed, burn_in=burn_in(args, law))
    print(summary(fitted))
    if args.bootstrap > MAX_BOOTSTRAP:
        print(f"bootstrap: {MAX_BOOTSTRAP} resamples of whole runs (a curve fit caps --bootstrap there)")
    if args.json:
        write_json(args.json, {"curve_law": fitted.to_dict()})
        print(f"wrote {args.json}")
    return 0


def burn_in(args, law: str) -> float:
    """--burn-in, checked: a share of the steps, and not with auto (which chooses its own)."""
    share = getattr(args, "burn_in", None)
    if share is None:
        return 0.0
    if not 0 <= share < 1:
        raise ValueError(f"--burn-in {share:g}: a share of each run's steps, 0 <= SHARE < 1")
    if law == AUTO:
        raise ValueError(f"--burn-in {share:g} with --law auto: auto chooses the burn-in; name a law")
    return share


def summary(fitted: CurveFit) -> str:
    scope = "across sizes" if fitted.form.joint else "one size"
    lines = [f"curve law {fitted.form.name} ({scope}): {fitted.form.formula}", f"  {fitted.form.citation}"]
    for name, value in fitted.values.items():
        ci = fitted.ci95.get(name)
        lines.append(f"  {name} = {value:.5g}" + (f"  95% [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""))
    lines.append(f"  summed Huber = {fitted.objective:.4g} over {fitted.n_points} points of "
                 f"{fitted.n_runs} runs")
    return "\n".join(lines + ([f"  {fitted.chosen}"] if fitted.chosen else []))


def run_predict(args) -> int:
    with open(args.fit_json) as fh:
        plain = json.load(fh)
    if "curve_law" not in plain:
        raise ValueError(f"{args.fit_json}: not a curve fit (no 'curve_law'); "
                         "run scaling fit with --step --lr")
    fitted = CurveFit.from_dict(plain["curve_law"])
    table = load_table(args.points)
    curves = foreign_curves(table, **_source_columns(args, table, loss=False))
    order = _row_order(table, args)
    predicted = np.empty(table.num_rows)
    predicted[order] = fitted.predict(curves)
    out = table.append_column("predicted_loss", pa.array(predicted))
    if fitted.samples is not None and len(fitted.samples) >= 10:
        lo, hi = np.nanpercentile(fitted.predict_samples(curves), [2.5, 97.5], axis=0)
        for name, values in (("predicted_loss_lo", lo), ("predicted_loss_hi", hi)):
            column = np.empty(table.num_rows)
            column[order] = values
            out = out.append_column(name, pa.array(column))
    write_table(out, args.out)
    print(f"wrote {args.out}: predicted_loss for {out.num_rows} logged steps of "
          f"{len(np.unique(curves.run))} runs under the {fitted.form.name} law")
    return 0


def _row_order(table: pa.Table, args) -> np.ndarray:
    """The table row of each curve point, in foreign_runs' order (runs as first seen, steps sorted)."""
    runs = table.column(args.run).to_numpy(zero_copy_only=False).astype(str)
    steps = table.column(args.step).to_numpy(zero_copy_only=False).astype(float)
    order = []
    for name in dict.fromkeys(runs):
        rows = np.flatnonzero(runs == name)
        order.append(rows[np.argsort(steps[rows], kind="stable")])
    return np.concatenate(order)
