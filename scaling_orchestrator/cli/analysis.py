"""`scaling fit`, `scaling report` and `scaling predict`: argparse over `scaling_orchestrator.analysis`
(fit, FitResult.load, predict), mounted by the main CLI (`scaling select`: cli/selection.py).

Bad input (a missing file or column, an unreadable table, a bad flag value) prints one line
on stderr naming the problem and returns 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from scaling_orchestrator.analysis.data.load import MixedSweepsWarning, SkippedFileWarning, load_table
from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.judge.forecast import DEFAULT_PARAMS_THRESHOLD
from scaling_orchestrator.analysis.laws.registry import forms
from scaling_orchestrator.analysis.numerics import write_json
from scaling_orchestrator.analysis.options import Columns, FitOptions
from scaling_orchestrator.analysis.pipeline import fit
from scaling_orchestrator.analysis.predict import predict_table, predicted_by, unpredicted, write_table
from scaling_orchestrator.analysis.prediction import HEADLINE, PREDICT_METHODS
from scaling_orchestrator.analysis.report.shape_study import is_shape_study, shape_studies, write_shape_report
from scaling_orchestrator.analysis.result import FitResult
from scaling_orchestrator.cli import adaptive_study, curves

EXIT_BAD_INPUT = 2
DEFAULT_LAW = "chinchilla"


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a fraction > 0 (0.25 = 25%)")
    return value


def positive_float(text: str) -> float:
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
    p.add_argument(
        "--budget", default="budget_flops", help="IsoFLOP budget column; snapped from FLOPs when absent"
    )
    p.add_argument("--param-convention", choices=("total", "non_embedding"), default="total")
    p.add_argument("--flops-convention", choices=("exact", "6n"), default="exact")
    p.add_argument(
        "--target-flops",
        type=positive_float,
        nargs="+",
        default=[],
        metavar="C",
        help="budgets to recommend (N*, D*, L*) for; default: an adaptive study's target_flops, "
        "else 3x, 10x and 100x the largest budget",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples of runs for the intervals (0: none)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--law",
        default=None,  # None: chinchilla, not named by the user (no stderr line when it cannot fit)
        metavar="NAME|auto",
        help=f"parametric law form, one of {', '.join(forms())}, or auto: the form "
        "that best predicts the largest-compute runs from the others "
        "(default: chinchilla, E + A/N^alpha + B/D^beta)",
    )
    p.add_argument(
        "--unique-tokens",
        metavar="COL",
        help="unique-tokens column U (tokens / epochs), for data_constrained",
    )
    p.add_argument(
        "--sweep",
        metavar="NAME",
        help="use only the rows of this sweep (needed when the source holds several)",
    )
    p.add_argument(
        "--params-threshold",
        type=fraction,
        default=DEFAULT_PARAMS_THRESHOLD,
        metavar="F",
        help=f"back-test: largest relative N* miss that passes (default {DEFAULT_PARAMS_THRESHOLD})",
    )
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable Parquet files in a results dir (warns naming each)",
    )


def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fit", help="fit scaling laws and recommend (N*, D*) per budget")
    _add_source_flags(p)
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON here")
    curves.add_flags(p)
    p.set_defaults(func=run_fit)
    return p


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="report.md, report.html and PNG plots")
    _add_source_flags(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.set_defaults(func=run_report)
    return p


def _rows_unique_tokens(args, table) -> str | None:
    """A law that needs unique tokens reads our rows' own `unique_tokens` column by default (a
    results folder, or a table that has it); elsewhere --unique-tokens stays required."""
    form = forms().get(args.law or "")
    if form is None or "unique_tokens" not in form.required_columns:
        return None
    ours = Path(args.source).is_dir() if table is None else "unique_tokens" in table.column_names
    return "unique_tokens" if ours else None


def fit_args(args, table=None):
    """scaling_orchestrator.analysis.fit on the parsed flags; table: the source as _read_source
    read it (None: fit reads it). A skipped corrupt file is one warning line on stderr; any
    other warning (numpy's, scipy's) is shown as Python shows it."""
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: allowed 0 or more resamples")
    unique = args.unique_tokens or _rows_unique_tokens(args, table)
    columns = Columns(params=args.params, tokens=args.tokens, flops=args.flops, loss=args.loss, run=args.run,
                      budget=args.budget, unique_tokens=unique,
                      param_convention=args.param_convention, flops_convention=args.flops_convention)
    targets = adaptive_study.default_targets(args)  # an adaptive study's own target by default
    options = FitOptions(target_flops=targets, n_bootstrap=args.bootstrap, law=args.law or DEFAULT_LAW,
                         seed=args.seed, params_threshold=args.params_threshold, sweep=args.sweep,
                         on_corrupt=_on_corrupt(args), curve_law=getattr(args, "curve_law", None) or "")
    with _warnings_reported(args):
        result = fit(args.source if table is None else table, columns, options,
                     name=None if table is None else args.source)
    if args.law:  # an explicit --law that cannot fit says so; the default's reason is in the fit
        say_law_failure(result, args.law, getattr(args, "command", "fit"))
    return result


def say_law_failure(result: FitResult, law: str, command: str) -> None:
    """One line on stderr when the parametric law asked for could not be fitted or cannot
    predict (fit.json says why under parametric.reason; the headline does not use it)."""
    if not result.parametric.fittable and result.data.n_final_points:
        print(f"scaling {command}: warning: --law {law}: {result.parametric.reason}", file=sys.stderr)


def _on_corrupt(args) -> str:
    return "skip" if args.skip_corrupt else "raise"


@contextmanager
def _warnings_reported(args):
    """Warnings raised inside, shown once it returns (an error instead is the one line said):
    a skipped corrupt file as one line on stderr, `scaling fit: warning: ...`; any other as
    Python shows it."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", SkippedFileWarning)
        yield
    for w in seen:
        if issubclass(w.category, SkippedFileWarning):
            print(f"scaling {getattr(args, 'command', 'fit')}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def guard(fn, args, command: str) -> int:
    try:
        return fn(args)
    except (ValueError, NotFittable, OSError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"scaling {command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_fit(args) -> int:
    return guard(_run_fit, args, "fit")


def _read_source(args):
    """(table, shape studies or None): a source file or folder read once, for the check whether
    it is a shape study (every row kind "shape", no --sweep) and then for the fit itself (a
    1000-trial results folder takes 1.4 s to read). (None, None) for a source that does not
    exist: the fit says so. Rows of several sweeps are refused or cut to --sweep by the fit."""
    if not isinstance(args.source, str) or not Path(args.source).exists():
        return None, None
    with _warnings_reported(args), warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedSweepsWarning)
        table = load_table(args.source, on_corrupt=_on_corrupt(args))
    if args.sweep or not is_shape_study(table):
        return table, None
    return table, shape_studies(table)


def _run_fit(args) -> int:
    if curves.wanted(args):
        return curves.run_fit(args)
    table, studies = _read_source(args)
    if studies is not None:  # no IsoFLOP points: the spread across shapes is the answer
        for study in studies:
            print(study.summary())
        if args.json:
            write_json(args.json, [s.to_dict() for s in studies])
            print(f"wrote {args.json}")
        return 0
    result = fit_args(args, table)
    print(result.summary())
    adaptive_study.say(args.source)
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def run_report(args) -> int:
    return guard(_run_report, args, "report")


def _run_report(args) -> int:
    table, studies = _read_source(args)
    if studies is not None:
        paths = write_shape_report(studies, args.out)
        for study in studies:
            print(study.summary())
        print(f"wrote {paths['markdown']} and {paths['html']} (1 plot)")
        return 0
    result = fit_args(args, table)
    paths = result.write_report(args.out)
    adaptive_study.add_to_report(paths, args.source)
    print(result.summary())
    adaptive_study.say(args.source)
    n_plots = len([p for p in paths.values() if p.suffix == ".png"])
    print(f"wrote {paths['markdown']} and {paths['html']} ({n_plots} plots)")
    return 0


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="the loss a fitted law predicts at given points")
    p.add_argument("fit_json", metavar="FIT_JSON", help="a `scaling fit --json` file (fit.json)")
    p.add_argument("points", metavar="POINTS", help="CSV or Parquet table of points")
    p.add_argument("--params", default="params", help="parameter-count column (default: params)")
    p.add_argument("--tokens", default="tokens", help="training-tokens column (default: tokens)")
    p.add_argument(
        "--flops",
        default="flops",
        help="training-FLOPs column; with tokens but no params N = C/(6D), with "
        "params but no tokens D = C/(6N) (default: flops)",
    )
    p.add_argument(
        "--unique-tokens",
        metavar="COL",
        help="unique-tokens column, for a data_constrained fit (default: unique_tokens)",
    )
    p.add_argument("--method", choices=PREDICT_METHODS, default=HEADLINE, help="whose law: the headline "
                   "method's (default; parametric where it has no loss frontier) or one by name")
    p.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="the points with predicted_loss (and _lo/_hi): .csv or .parquet",
    )
    curves.add_flags(p, predict=True)
    p.set_defaults(func=run_predict)
    return p


def run_predict(args) -> int:
    return guard(_run_predict, args, "predict")


def _run_predict(args) -> int:
    if curves.wanted(args):
        return curves.run_predict(args)
    table = predict_table(
        FitResult.load(args.fit_json),
        args.points,
        params=args.params,
        tokens=args.tokens,
        flops=args.flops,
        unique_tokens=args.unique_tokens,
        method=args.method,
    )
    write_table(table, args.out)
    bounds = " with its 95% interval" if "predicted_loss_lo" in table.column_names else ""
    print(f"wrote {args.out}: predicted_loss{bounds} for {table.num_rows} points by "
          f"{predicted_by(table)}{unpredicted(table)}")
    return 0
