"""`scaling_orchestrator.analysis.fit`: one table of runs in, every method's fit out (a FitResult).

source -> one Arrow table (cut to one sweep) -> the kind == "scaling" rows as final points
(and curves where the table has them) -> parametric law with run-bootstrap intervals, IsoFLOP,
envelope, Kaplan, back-test, recommendations; the kind == "hparam" rows -> lr*(N), B*(C).

The back-test fits without the held-out runs and judges them (analysis/backtest.py); every
other method then fits ALL the runs, held-out ones included: the most expensive runs are the
most informative, and they have been validated by then.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scaling_orchestrator.analysis.data.load import (
    MixedSweepsWarning,
    convention_columns,
    load_points,
    load_table,
    table_sweeps,
)
from scaling_orchestrator.analysis.data.points import Points, final_rows
from scaling_orchestrator.analysis.errors import NotFittable, Unfit
from scaling_orchestrator.analysis.judge.backtest import flops_per_token_model, run_backtest
from scaling_orchestrator.analysis.judge.forecast import DEFAULT_PARAMS_THRESHOLD, DEFAULT_THRESHOLD
from scaling_orchestrator.analysis.judge.headline import choose_method, headline
from scaling_orchestrator.analysis.judge.recommend import (
    METHODS,
    band_grid,
    check_targets,
    default_targets,
    frontier_grid,
    loss_frontier,
    recommend,
)
from scaling_orchestrator.analysis.judge.warnings import warnings_for
from scaling_orchestrator.analysis.laws.choice import AUTO, LawChoice, check_law, choose_law, given
from scaling_orchestrator.analysis.laws.registry import LawForm, fit_law, law_form
from scaling_orchestrator.analysis.methods.envelope import fit_envelope, has_curves
from scaling_orchestrator.analysis.methods.hparam_search import fit_hparams, split_kinds
from scaling_orchestrator.analysis.methods.isoflop import fit_isoflop
from scaling_orchestrator.analysis.methods.parabola import MIN_VALUES
from scaling_orchestrator.analysis.methods.single_variable import KaplanFit, fit_kaplan
from scaling_orchestrator.analysis.report.text import row_backends
from scaling_orchestrator.analysis.result import DataSummary, FitResult, compare_exponents

NO_SCALING = "no scaling rows to fit (kind 'scaling', final, status ok, finite positive loss)"


@dataclass(frozen=True)
class FitOptions:
    form: LawForm | None          # None: chosen by extrapolation (law="auto")
    target_flops: tuple[float, ...]
    n_bootstrap: int
    seed: int
    window: int
    threshold: float = DEFAULT_THRESHOLD
    params_threshold: float = DEFAULT_PARAMS_THRESHOLD


def fit(source, *, params: str = "params", tokens: str = "tokens", flops: str = "flops",
        loss: str = "val_loss", run: str = "trial_id", budget: str = "budget_flops",
        param_convention: str = "total", flops_convention: str = "exact", sweep: str | None = None,
        n_bootstrap: int = 1000, target_flops=(), law: str = "chinchilla", seed: int = 0,
        window: int = 5, on_corrupt: str = "raise",
        params_threshold: float = DEFAULT_PARAMS_THRESHOLD,
        unique_tokens: str | None = None, table: pa.Table | None = None) -> FitResult:
    """Fit every method to a results dir, a Parquet / Arrow / CSV file or a pyarrow Table.

    Column names default to our row schema; param_convention "total" | "non_embedding" and
    flops_convention "exact" | "6n" pick its columns. sweep: the sweep to fit when the source
    holds several (refused otherwise). target_flops: budgets to recommend (N*, D*, L*) for
    (default: 3x, 10x and 100x the largest budget). n_bootstrap: run resamples for the
    intervals (0: none). law: a name of scaling_orchestrator.analysis.laws.registry.forms(), or "auto"
    to choose by
    extrapolation (analysis/law_choice.py). unique_tokens: the column of unique tokens U, for
    forms that need it (data_constrained). A table with tokens and flops but no params column
    gets N = C / (6 D), said in the data section's "derived". window: points per IsoFLOP /
    hyperparameter parabola. on_corrupt:
    "raise" | "skip" (unreadable Parquet files of a results dir; a skipped one is a
    SkippedFileWarning). params_threshold: the back-test's largest N* miss, relative (0.25).
    table: source as load_table already read it (the CLI reads a results dir once for its
    shape-study check and this fit: 1.4 s for 1000 trial files); source then only names it.

    numpy's floating-point warnings stay inside: a fit that overflows says so in
    FitResult.warnings, in words, where it matters."""
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap={n_bootstrap}: allowed 0 or more resamples")
    if window < MIN_VALUES:
        raise ValueError(f"window={window}: must be at least {MIN_VALUES}")
    if not 0 < params_threshold < math.inf:
        raise ValueError(
            f"params_threshold={params_threshold}: must be a fraction > 0 (0.25 = a 25% N* miss)"
        )
    check_law(law, unique_tokens)
    options = FitOptions(
        None if law == AUTO else law_form(law),
        check_targets(target_flops),
        n_bootstrap,
        seed,
        window,
        params_threshold=params_threshold,
    )
    n_column, c_column = convention_columns(params, flops, param_convention, flops_convention)
    name = "table" if isinstance(source, pa.Table) else str(source)
    table = read_source(source, name, sweep=sweep, on_corrupt=on_corrupt, table=table)
    points, curves = scaling_points(
        table,
        name,
        params=params,
        tokens=tokens,
        flops=flops,
        loss=loss,
        run=run,
        budget=budget,
        param_convention=param_convention,
        flops_convention=flops_convention,
        unique_tokens=unique_tokens,
    )
    with quiet_numerics():
        hparams = fit_hparams(
            table, params=n_column, loss=loss, window=window, n_bootstrap=n_bootstrap, seed=seed
        )
        return assemble(points, curves, table, hparams, options, name)


@contextmanager
def quiet_numerics():
    """numpy's overflow / invalid-value warnings off while the fits run. A law that overflows
    (alpha fitted at 54, A = 4e258) is caught by what it produced: non-finite constants, a
    degenerate exponent, resamples dropped; each becomes a sentence in FitResult.warnings."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def read_source(
    source, name: str, *, sweep: str | None = None, on_corrupt: str = "raise", table: pa.Table | None = None
) -> pa.Table:
    """The source's table (`table` when load_table already read it), cut to `sweep`; rows of
    several sweeps without one are refused (one fit over two sweeps' runs answers neither's
    question)."""
    if table is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MixedSweepsWarning)  # refused or filtered below
            table = load_table(source, on_corrupt=on_corrupt)
    sweeps = table_sweeps(table)
    if sweep is None:
        if len(sweeps) > 1:
            raise ValueError(f"{name} holds rows of sweeps {sweeps}; pass --sweep NAME to fit one")
        return table
    if "sweep" not in table.column_names:
        raise ValueError(f"--sweep {sweep!r}: {name} has no 'sweep' column")
    if sweep not in sweeps:
        raise ValueError(f"--sweep {sweep!r}: no such sweep in {name}; its sweeps are {sweeps}")
    return table.filter(pc.equal(pc.cast(table.column("sweep"), "string"), sweep))


def scaling_points(table: pa.Table, name: str, **columns) -> tuple[Points | None, Points | None]:
    """(final points, curves or None) of the kind == "scaling" rows. Both None when the table
    has hparam rows and no scaling rows, so an hparam-only sweep still yields its lr law."""
    scaling, hparam = split_kinds(table)
    if scaling.num_rows == 0 and hparam.num_rows > 0:
        return None, None
    points = replace(load_points(scaling, **columns), source=name)
    curves = None
    if "final" in scaling.column_names:
        curves = replace(load_points(scaling, curves=True, **columns), source=name)
    return points, curves


def _attempt(method):
    """The method's fit, or Unfit with the reason it cannot run."""
    try:
        return method()
    except (NotFittable, ValueError) as exc:
        return Unfit.from_error(exc)


def assemble(points, curves, table, hparams, options: FitOptions, name: str) -> FitResult:
    """Every scaling method on the points (and curves), plus the hparam laws fitted already."""
    if points is None:  # hparam rows only
        if hparams.n_trials == 0:
            raise ValueError("loss: no finite, positive final points to fit")
        return no_scaling(table, hparams, options, name)
    curves = points if curves is None else curves
    rows = final_rows(points)
    budgets = np.unique(np.asarray(points.budget, float)[rows])
    targets = options.target_flops or default_targets(budgets)
    fpt = flops_per_token_model(points)
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    U = None if points.unique is None else np.asarray(points.unique, float)[rows]
    form, choice = (options.form, given(options.form)) if options.form is not None else choose_law(points)
    sections = {
        "parametric": fit_law(
            form,
            N,
            D,
            L,
            np.asarray(points.run)[rows],
            n_bootstrap=options.n_bootstrap,
            seed=options.seed,
            flops_per_token=fpt,
            U=U,
        ),
        "isoflop": _attempt(
            lambda: fit_isoflop(
                points, window=options.window, n_bootstrap=options.n_bootstrap, seed=options.seed
            )
        ),
        "envelope": _attempt(lambda: fit_envelope(curves)),
    }
    backtest = _attempt(
        lambda: run_backtest(
            points,
            curves,
            threshold=options.threshold,
            params_threshold=options.params_threshold,
            window=options.window,
            form=form,
        )
    )
    frontiers = {m: loss_frontier(m, sections[m]) for m in ("isoflop", "envelope")}
    data = DataSummary(
        name,
        int(len(points.loss)),
        int(len(rows)),
        int(len(np.unique(np.asarray(points.run)[rows]))),
        tuple(float(b) for b in budgets),
        dict(points.excluded),
        excluded_trials(table),
        bool(has_curves(curves)),
        hparams.n_trials,
        tuple(points.derived),
        row_backends(table),
    )
    result = FitResult(
        data,
        **sections,
        kaplan=fit_kaplan(points),
        backtest=backtest,
        hparams=hparams,
        recommendations=recommend(sections, frontiers, targets, fpt),
        frontier_grid=frontier_grid(sections, frontiers, band_grid(budgets, targets), fpt),
        disagreement=compare_exponents(sections),
        target_flops=tuple(targets),
        points=points,
        flops_per_token=fpt,
        loss_frontiers=frontiers,
        n_bootstrap=options.n_bootstrap,
        law=choice,
    )
    return with_headline(result, options.window)


def with_headline(result: FitResult, window: int) -> FitResult:
    """The result with its headline (one method, chosen by the back-test) and warnings; the
    back-test's "passed" then speaks for that method."""
    plain = result.to_dict()
    method, _ = choose_method(plain)
    if result.backtest.fittable:
        result = replace(result, backtest=replace(result.backtest, headline_method=method))
        plain = result.to_dict()
    N = np.asarray(result.points.params, float)[final_rows(result.points)]
    rows = headline(plain, float(N.max()))
    samples = getattr(result.parametric, "samples", None)
    resamples = (
        (0, 0)
        if samples is None
        else (len(samples) - len(result.parametric.form.finite_samples(samples)), len(samples))
    )
    found = warnings_for(
        plain, result.points, [r.to_dict() for r in rows], window=window, degenerate_resamples=resamples
    )
    return replace(result, headline=tuple(rows), warnings=tuple(found))


def no_scaling(table, hparams, options: FitOptions, name: str) -> FitResult:
    """Every scaling section present and not fittable: the source holds only hparam trials."""
    unfit = Unfit(NO_SCALING)
    sections = {m: unfit for m in METHODS}
    data = DataSummary(name, 0, 0, 0, (), {}, excluded_trials(table), False, hparams.n_trials)
    return FitResult(
        data,
        **sections,
        kaplan=KaplanFit(unfit, unfit, unfit, attempted=False),
        backtest=unfit,
        hparams=hparams,
        recommendations=recommend(sections, {}, options.target_flops, None),
        frontier_grid={m: () for m in METHODS},
        disagreement=compare_exponents(sections),
        target_flops=options.target_flops,
        law=LawChoice(options.form.name if options.form else "", NO_SCALING),
    )


def excluded_trials(table) -> dict:
    """status -> trial ids for diverged/failed trials, when the source table records them."""
    if table is None or not {"status", "trial_id"} <= set(table.column_names):
        return {}
    out: dict[str, list[str]] = {}
    for status, trial in zip(table.column("status").to_pylist(), table.column("trial_id").to_pylist()):
        if status in ("diverged", "failed") and trial not in out.setdefault(status, []):
            out[status].append(trial)
    return out
