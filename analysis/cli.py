"""`scaling fit` and `scaling report`: argparse wiring the main CLI mounts as subcommands.

Bad input (a missing file or column, an unreadable table, a bad flag value) prints one line
on stderr naming the problem and returns 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from analysis.fit import fit_all
from analysis.isoflop import NotFittable
from analysis.report import fmt, fmt_ci, write_report

EXIT_BAD_INPUT = 2


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite FLOP count > 0")
    return value


def _add_source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="results dir, or a Parquet / Arrow / CSV file of runs")
    p.add_argument("--params", default="params", help="parameter-count column (default: params)")
    p.add_argument("--tokens", default="tokens", help="training-tokens column (default: tokens)")
    p.add_argument("--flops", default="flops", help="training-FLOPs column (default: flops)")
    p.add_argument("--loss", default="val_loss", help="loss column, nats/token (default: val_loss)")
    p.add_argument("--run", default="trial_id", help="run id column (default: trial_id)")
    p.add_argument("--budget", default="budget_flops",
                   help="IsoFLOP budget column; snapped from FLOPs when absent")
    p.add_argument("--param-convention", choices=("total", "non_embedding"), default="total")
    p.add_argument("--flops-convention", choices=("exact", "6n"), default="exact")
    p.add_argument("--target-flops", type=_positive_float, nargs="+", default=[], metavar="C",
                   help="budgets to recommend (N*, D*, L*) for; default: largest and 10x it")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of runs for the intervals (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", metavar="NAME",
                   help="use only the rows of this sweep (needed when the source holds several)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip unreadable Parquet files in a results dir (warns naming each)")


def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fit", help="fit scaling laws and recommend (N*, D*) per budget")
    _add_source_flags(p)
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON here")
    p.set_defaults(func=run_fit)
    return p


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="report.md, report.html and PNG plots")
    _add_source_flags(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.set_defaults(func=run_report)
    return p


def _load(args):
    """(final points or None, curves or None, table) from the source with the column flags.

    Scaling methods see only the kind == "scaling" rows (load_points does not filter on
    kind); the hparam laws read the table. Points are None when the source has hparam rows and
    no scaling rows, so an hparam-only sweep still yields its lr law."""
    from analysis.hparams import split_kinds
    from analysis.load import load_points

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: allowed 0 or more resamples")
    cols = dict(params=args.params, tokens=args.tokens, flops=args.flops, loss=args.loss,
                run=args.run, budget=args.budget, param_convention=args.param_convention,
                flops_convention=args.flops_convention)
    table = _read(args)   # read once; every view below comes from it
    scaling, hparam = split_kinds(table)
    if scaling.num_rows == 0 and hparam.num_rows > 0:
        return None, None, table
    points = replace(load_points(scaling, **cols), source=str(args.source))
    curves = None
    if "final" in scaling.column_names:
        curves = replace(load_points(scaling, curves=True, **cols), source=str(args.source))
    return points, curves, table


def _read(args):
    """The source's table, cut to --sweep; rows of several sweeps without --sweep are refused
    (one fit over two sweeps' runs answers neither's question). A skipped corrupt file is
    reported as one warning line on stderr."""
    import pyarrow.compute as pc

    from analysis.load import MixedSweepsWarning, load_table, table_sweeps

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", MixedSweepsWarning)   # refused or filtered below
        table = load_table(args.source, on_corrupt="skip" if args.skip_corrupt else "raise")
    for w in seen:
        print(f"scaling {getattr(args, 'command', 'fit')}: warning: {w.message}", file=sys.stderr)
    sweeps = table_sweeps(table)
    if args.sweep is None:
        if len(sweeps) > 1:
            raise ValueError(f"{args.source} holds rows of sweeps {sweeps}; "
                             "pass --sweep NAME to fit one")
        return table
    if "sweep" not in table.column_names:
        raise ValueError(f"--sweep {args.sweep!r}: {args.source} has no 'sweep' column")
    if args.sweep not in sweeps:
        raise ValueError(f"--sweep {args.sweep!r}: no such sweep in {args.source}; "
                         f"its sweeps are {sweeps}")
    return table.filter(pc.equal(pc.cast(table.column("sweep"), "string"), args.sweep))


def _param_column(args) -> str:
    """The N column of the hparam laws: the --params flag under --param-convention."""
    from analysis.load import PARAM_COLUMNS

    return PARAM_COLUMNS[args.param_convention] if args.params == "params" else args.params


def _fit(args) -> tuple[dict, object]:
    points, curves, table = _load(args)
    result = fit_all(points, curves=curves, table=table, params_column=_param_column(args),
                     loss_column=args.loss, target_flops=args.target_flops,
                     n_bootstrap=args.bootstrap, seed=args.seed)
    result["data"]["source"] = result["data"]["source"] or str(args.source)   # hparam-only
    return result, points


def _guard(fn, args, command: str) -> int:
    try:
        return fn(args)
    except (ValueError, NotFittable, OSError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"scaling {command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_fit(args) -> int:
    return _guard(_run_fit, args, "fit")


def _run_fit(args) -> int:
    result, _ = _fit(args)
    print(format_summary(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_report(args) -> int:
    return _guard(_run_report, args, "report")


def _run_report(args) -> int:
    result, points = _fit(args)
    paths = write_report(result, points, args.out)
    (Path(args.out) / "fit.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(format_summary(result))
    print(f"wrote {paths['markdown']} and {paths['html']} ({len(paths) - 2} plots)")
    return 0


def _method_line(name: str, sec: dict) -> str:
    if not sec.get("fittable"):
        return f"{name}: not fittable: {sec.get('reason')}"
    ci = sec.get("ci95", {})
    return (f"{name}: a = {fmt(sec['a'], 4)} {fmt_ci(ci.get('a'))}, "
            f"b = {fmt(sec['b'], 4)} {fmt_ci(ci.get('b'))}")


def format_summary(result: dict) -> str:
    """Readable summary: data, fitted parameters with 95% intervals, back-test, N*/D*/L* table."""
    d, par = result["data"], result["parametric"]
    excluded = ", ".join(f"{k} {v}" for k, v in sorted(d["excluded"].items())) or "none"
    lines = [f"{d['source']}: {d['n_final_points']} points, {d['n_runs']} runs, "
             f"{d['n_budgets']} budgets; excluded: {excluded}"
             + (f"; {d['n_hparam_trials']} hparam trials" if d.get("n_hparam_trials") else "")]
    if par.get("fittable"):
        ci = par.get("ci95", {})
        lines.append("parametric L(N, D) = E + A/N^alpha + B/D^beta:")
        lines += [f"  {k:<6}{fmt(par[k], 4):>10}  {fmt_ci(ci.get(k), 4)}"
                  for k in ("E", "A", "B", "alpha", "beta")]
    lines.append(_method_line("parametric exponents", par))
    lines.append(_method_line("isoflop", result["isoflop"]))
    lines.append(_method_line("envelope", result["envelope"]))
    if result["disagreement"]["flag"]:
        lines.append("WARNING: the approaches' 95% intervals for a or b do not overlap")
    bt = result["backtest"]
    if bt.get("fittable"):
        lines.append(f"back-test at C = {fmt(bt['held_out_flops'])}: predicted "
                     f"{fmt(bt['predicted_loss'], 4)}, observed {fmt(bt['observed_loss'], 4)}, "
                     f"error {100 * bt['rel_error']:.2f}% -> "
                     + ("passed" if bt["passed"] else
                        f"FAILED (threshold {100 * bt['threshold']:.0f}%)"))
    else:
        lines.append(f"back-test: not fittable: {bt.get('reason')}")
    lines += hparam_lines(result)
    lines.append(f"{'target C':>10}  {'method':<10} {'N*':<28} {'D*':<28} L*")
    for r in result["compute_optimal"]:
        if r.get("fittable", True) is False:
            lines.append(f"{fmt(r['flops']):>10}  {r['method']:<10} not fittable: {r['reason']}")
            continue
        ci = r["ci95"]
        lines.append(f"{fmt(r['flops']):>10}  {r['method']:<10} "
                     f"{fmt(r['params']) + ' ' + fmt_ci(ci['params']):<28} "
                     f"{fmt(r['tokens']) + ' ' + fmt_ci(ci['tokens']):<28} "
                     f"{fmt(r['loss'], 4)} {fmt_ci(ci['loss'], 4)}")
    return "\n".join(lines)


def hparam_lines(result: dict) -> list[str]:
    """lr*(N) and B*(C) with 95% intervals, or why not; nothing when there are no hparam rows."""
    lines = []
    for key, law, x in (("lr_law", "lr*(N)", "N"), ("batch_law", "B*(C) batch_tokens", "C")):
        sec = result.get(key, {})
        if sec.get("reason") == "no hparam rows":
            continue
        if not sec.get("fittable"):
            lines.append(f"{law}: not fittable: {sec.get('reason')}")
            continue
        ci = sec["ci95"]
        lines.append(f"{law} = {fmt(sec['coefficient'], 4)} {x}^{fmt(sec['exponent'], 4)}, "
                     f"exponent {fmt_ci(ci['exponent'])}, over {sec['n_sizes']} sizes")
    return lines
