"""`scaling_orchestrator.analysis.fit`: one table of runs in, every method's fit out (a FitResult).

source -> one Arrow table (cut to one sweep) -> the kind == "scaling" rows as final points
(and curves where the table has them) -> parametric law with run-bootstrap intervals, IsoFLOP,
envelope, Kaplan, back-test, recommendations; the kind == "hparam" rows -> lr*(N), B*(C).

The back-test fits without the held-out runs and judges them (judge/backtest.py), its law
started from the law on all runs; every other method fits ALL the runs, held-out ones
included: the most expensive runs are the most informative, and they have been validated.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scaling_orchestrator.analysis.data.load import (
    MixedSweepsWarning,
    convention_columns,
    load_points,
    load_table,
    source_name,
    table_sweeps,
)
from scaling_orchestrator.analysis.data.points import Points, final_rows
from scaling_orchestrator.analysis.data.schema import TRUNK
from scaling_orchestrator.analysis.errors import NotFittable, Unfit
from scaling_orchestrator.analysis.judge.backtest import run_backtest
from scaling_orchestrator.analysis.judge.forecast import DEFAULT_THRESHOLD
from scaling_orchestrator.analysis.judge.headline import choose_method, headline
from scaling_orchestrator.analysis.judge.recommend import (
    METHODS,
    band_grid,
    default_targets,
    flops_per_token_model,
    frontier_grid,
    loss_frontier,
    recommend,
)
from scaling_orchestrator.analysis.judge.warnings import warnings_for
from scaling_orchestrator.analysis.laws.choice import (
    AUTO,
    LawChoice,
    check_law,
    choose_law,
    given,
    not_finite,
)
from scaling_orchestrator.analysis.laws.registry import LawForm, fit_law_later, law_form
from scaling_orchestrator.analysis.methods.curve import curve_section
from scaling_orchestrator.analysis.methods.envelope import fit_envelope, has_curves
from scaling_orchestrator.analysis.methods.hparam_search import fit_hparams, split_kinds
from scaling_orchestrator.analysis.methods.isoflop import fit_isoflop
from scaling_orchestrator.analysis.methods.single_variable import KaplanFit, fit_kaplan
from scaling_orchestrator.analysis.numerics import quiet_numerics
from scaling_orchestrator.analysis.options import Columns, FitOptions, as_columns, as_options
from scaling_orchestrator.analysis.report.text import row_backends
from scaling_orchestrator.analysis.result import DataSummary, FitResult, compare_exponents

NO_SCALING = "no scaling rows to fit (kind 'scaling', final, status ok, finite positive loss)"


def fit(source, columns: Columns | dict | None = None, options: FitOptions | dict | None = None, *,
        name: str | None = None) -> FitResult:
    """Fit every method to a results folder, a Parquet / Arrow / CSV file, a pyarrow Table or
    a pandas DataFrame.

    columns: which column holds what (Columns, or a dict of its fields; default: our row
    schema). options: how to fit (FitOptions, or a dict of its fields). name: what the result
    calls the source (default: its path, "table" or "DataFrame"); the CLI reads a results
    folder once for its shape-study check and passes that table here under its path. A bad
    field is one line naming it and its value (ValueError) before anything is read.

    numpy's floating-point warnings stay inside: a fit that overflows says so in
    FitResult.warnings, in words, where it matters."""
    columns, options = as_columns(columns), as_options(options)
    check_law(options.law, columns.unique_tokens)
    form = None if options.law == AUTO else law_form(options.law)   # None: chosen by extrapolation
    name = source_name(source) if name is None else name
    table = read_source(source, name, sweep=options.sweep, on_corrupt=options.on_corrupt)
    points, curves = scaling_points(table, name, columns)
    n_column, _ = convention_columns(columns.params, columns.flops, columns.param_convention,
                                     columns.flops_convention)
    with quiet_numerics():
        hparams = fit_hparams(table, params=n_column, loss=columns.loss, window=options.window,
                              n_bootstrap=options.n_bootstrap, seed=options.seed)
        return assemble(points, curves, table, hparams, options, form, name)


def read_source(source, name: str, *, sweep: str | None = None, on_corrupt: str = "raise") -> pa.Table:
    """The source's table, cut to `sweep`; rows of several sweeps without one are refused (one
    fit over two sweeps' runs answers neither's question)."""
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


def scaling_points(table: pa.Table, name: str, columns: Columns) -> tuple[Points | None, Points | None]:
    """(final points, curves or None) of the kind == "scaling" rows. Both None when the table
    has hparam rows and no scaling rows, so an hparam-only sweep still yields its lr law."""
    columns = vars(columns)
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


def assemble(points, curves, table, hparams, options: FitOptions, form: LawForm | None,
             name: str) -> FitResult:
    """Every scaling method on the points (and curves), plus the hparam laws fitted already.
    form: the parametric law's form; None chooses one by extrapolation."""
    if points is None:  # hparam rows only
        if hparams.n_trials == 0:
            raise ValueError("loss: no finite, positive final points to fit")
        return no_scaling(table, hparams, options, form, name)
    curves = points if curves is None else curves
    budgets = np.unique(np.asarray(points.budget, float)[final_rows(points)])
    targets = options.target_flops or default_targets(budgets)
    fpt = flops_per_token_model(points)
    form, choice, law = (form, given(form), None) if form is not None else choose_law(points)
    # the parametric bootstrap's refits run in a forked child while the other methods and the
    # back-test fit here (laws/cores.py): `scaling fit` on 1,000 trials, about 1 s less
    near, parametric = parametric_section(points, form, fpt, law, choice,
                                          dict(n_bootstrap=options.n_bootstrap, seed=options.seed),
                                          background=True)
    sections = fit_sections(points, curves, options)
    curve_fit, why_not = curve_runner(table, budgets, options, name)
    sections["curve"] = _attempt(lambda: curve_fit((), options.n_bootstrap)) if curve_fit else Unfit(why_not)
    backtest = _attempt(lambda: run_backtest(points, curves, threshold=DEFAULT_THRESHOLD,
                                             params_threshold=options.params_threshold,
                                             window=options.window, form=form, near=near,
                                             curve_fit=curve_fit and (lambda held: curve_fit(held, 0))))
    sections = {"parametric": parametric(), **sections}
    frontiers = {m: loss_frontier(m, sections[m]) for m in ("isoflop", "envelope")}
    result = FitResult(
        data_summary(points, curves, table, hparams, name),
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


def fit_sections(points: Points, curves: Points, options: FitOptions) -> dict:
    """method -> its fit or Unfit, but the parametric law (parametric_section): the IsoFLOP
    parabolas (bootstrapped over runs), the envelope of the curves."""
    boot = dict(n_bootstrap=options.n_bootstrap, seed=options.seed)
    return {
        "isoflop": _attempt(lambda: fit_isoflop(points, window=options.window, **boot)),
        "envelope": _attempt(lambda: fit_envelope(curves)),
    }


def curve_runner(table, budgets, options: FitOptions, name: str):
    """(fit(without run ids, resamples) -> CurveMethod, "") when the curve method runs on this
    table (FitOptions.curve_law), else (None, why not)."""
    law = options.curve_law
    has_trunks = "group" in table.column_names and TRUNK in set(table.column("group").to_pylist())
    if law == "none" or (law == "" and not has_trunks):
        return None, ("not attempted: curve_law none" if law == "none" else
                      "not attempted: no trunk rows (run a trunks or branches design, or set curve_law)")
    folder = name if Path(name).is_dir() else None

    def run(without, resamples):
        return curve_section(table, budgets, law=law or "auto", n_bootstrap=resamples,
                             seed=options.seed, without=without, folder=folder)
    return run, ""


def parametric_section(points: Points, form: LawForm, fpt, law, choice: LawChoice | None, boot: dict,
                       background: bool = False):
    """(the law fitted to the final points or None, finish() -> the section): the form's law,
    bootstrapped over runs, or Unfit when it cannot predict (a constant not finite), or when
    `--law auto` found no form whose refit can. background: the bootstrap's refits run in a
    forked child until finish()."""
    if law is None and choice is not None and choice.rejected:
        unfit = Unfit(f"--law auto: no form's refit on all runs can predict ({'; '.join(choice.rejected)})")
        return None, lambda: unfit
    rows = final_rows(points)
    N, D, L = (np.asarray(v, float)[rows] for v in (points.params, points.tokens, points.loss))
    U = None if points.unique is None else np.asarray(points.unique, float)[rows]
    if law is None:
        try:
            law = form.fit(N, D, L, U)
        except (NotFittable, ValueError) as exc:
            unfit = Unfit.from_error(exc)
            return None, lambda: unfit
    problem = not_finite(form, law)
    if problem:
        unfit = Unfit(f"the {form.name} law fitted to these runs cannot predict: {problem}")
        return None, lambda: unfit
    return law, fit_law_later(form, N, D, L, np.asarray(points.run)[rows], flops_per_token=fpt, U=U,
                              law=law, background=background, **boot)


def data_summary(points: Points, curves: Points, table, hparams, name: str) -> DataSummary:
    rows = final_rows(points)
    return DataSummary(
        name,
        int(len(points.loss)),
        int(len(rows)),
        int(len(np.unique(np.asarray(points.run)[rows]))),
        tuple(float(b) for b in np.unique(np.asarray(points.budget, float)[rows])),
        dict(points.excluded),
        excluded_trials(table),
        bool(has_curves(curves)),
        hparams.n_trials,
        tuple(points.derived),
        row_backends(table),
    )


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
    passed_over = () if result.law is None else result.law.rejected
    notes = [f"--law auto passed over a better-scored form: {r}" for r in passed_over]
    return replace(result, headline=tuple(rows), warnings=tuple(found) + tuple(notes))


def no_scaling(table, hparams, options: FitOptions, form: LawForm | None, name: str) -> FitResult:
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
        law=LawChoice(form.name if form else "", NO_SCALING),
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
