"""The report's answer and its caveats, in words: the headline, the warnings, every method's
recommendation with why a cell is empty, how the intervals were made, and the back-test.

Blocks as report/render.py renders them; numbers read off the typed FitResult.
"""

from __future__ import annotations

from scaling_orchestrator.analysis.judge.backtest import BY_GROUP
from scaling_orchestrator.analysis.judge.forecast import tier_word
from scaling_orchestrator.analysis.judge.headline import (
    CONFIDENT_EXTRAPOLATION,
    CONFIDENT_SPAN,
    miss_text,
    sci,
)
from scaling_orchestrator.analysis.report.summary import fmt, fmt_ci

# Measured by `python bench/coverage.py --seeds 100 --resamples 200 --noise 0.01` (848 s on 2
# busy cores): a known law (the demo's fitted constants) on the demo's 4 x 4 grid, fresh 1%
# noise per seed; the share of seeds whose 95% interval contained the truth. 80 in 100 is
# outside the binomial 90-99 range of a calibrated 95% interval: the within-budget IsoFLOP
# bootstrap on 4-point budgets is too narrow.
COVERAGE = {"parametric alpha": 1.00, "parametric beta": 0.98, "parametric N*": 1.00,
            "isoflop a": 0.83, "isoflop N*": 0.80}
COVERAGE_SEEDS, COVERAGE_RESAMPLES = 100, 200
VERDICTS = (f"confident: its loss and N* forecasts held in the back-test, N*'s interval spans "
            f"at most {CONFIDENT_SPAN:.0f}x and N* is at most {CONFIDENT_EXTRAPOLATION:.0f}x the "
            "largest model trained; indicative: what could be judged held, but the interval "
            "is wider, the reach longer, a forecast could not be judged or the measured N* it "
            "was judged against is uncertain (near-duplicate sizes, a grid capped by the dial); "
            "untested: no back-test could judge this method; unreliable: a forecast missed its "
            "threshold or the fit is degenerate (when no method held, the intervals span every "
            "method's answer).")


TITLE = "Scaling-law fit report"
SIMULATE = "simulate"     # scaling_orchestrator.analysis.data.schema's backend of rows drawn from a law


def row_backends(table) -> tuple[str, ...]:
    """The distinct `backend` values of a table's rows ("torch" for a table without the column:
    published data, older schema versions)."""
    if table is None or "backend" not in table.column_names:
        return ("torch",)
    values = table.column("backend").to_pylist()
    return tuple(sorted({v or "torch" for v in values})) or ("torch",)


def title_blocks(result) -> list:
    """The report's title: SIMULATED, with a line saying so, when every row was drawn from a law
    (backend simulate); result.data.backends as row_backends gives it."""
    backends = tuple(getattr(result.data, "backends", ()) or ())
    if backends != (SIMULATE,):
        return [("h1", TITLE)]
    return [("h1", f"SIMULATED {TITLE.lower()}"),
            ("p", "This is not a measurement of training: every run in this report is "
                  "simulated (backend simulate), its losses drawn from a known law plus noise "
                  "to rehearse the study's design.")]


def headline_blocks(result) -> list:
    """The answer at the top: one recommendation per target, its verdict, then the warnings."""
    if not result.headline:
        return [("h2", "Recommendation"), ("p", "No scaling rows: nothing to recommend.")]
    first = result.headline[0]
    items = [f"{sci(h.flops, 3)} FLOPs ({h.verdict}): {h.advice()}." for h in result.headline]
    blocks = [("h2", "Recommendation"),
              ("p", f"From the {first.method} method, chosen because {first.why}."),
              ("ul", items), ("p", "Verdicts. " + VERDICTS), ("h2", "Warnings")]
    if result.warnings:
        return blocks + [("ul", list(result.warnings))]
    return blocks + [("p", "None: every constant is identified, the methods agree within "
                           "their intervals, the recommendation stays within reach of the "
                           "runs and the headline method's back-test held.")]


def _na_note(r, result) -> str:
    """Why an interval cell of this row is n/a."""
    if result.n_bootstrap == 0:
        return "no intervals: --bootstrap 0"
    if r.method == "envelope":
        return "no intervals: the envelope is not bootstrapped"
    notes = []
    if r.method == "isoflop":
        if r.ci95.get("params") is None:
            notes.append("N*, D*: fewer than 10 usable resamples")
        notes.append("L*: its loss frontier is fitted once, not bootstrapped")
    elif None in (r.ci95.get("params") or [None]):
        notes.append("too few finite resamples")
    return "; ".join(notes)


def recommendation_blocks(result) -> list:
    """Every method's (N*, D*, L*) per target, so the headline's choice can be checked."""
    rows = []
    for r in result.recommendations:
        if not r.fittable:
            rows.append([fmt(r.flops), r.method, "not fittable", "", "", r.reason])
            continue
        ci = r.ci95
        rows.append([fmt(r.flops), r.method, f"{fmt(r.params)} {fmt_ci(ci.get('params'))}",
                     f"{fmt(r.tokens)} {fmt_ci(ci.get('tokens'))}",
                     f"{fmt(r.loss, 4)} {fmt_ci(ci.get('loss'), 4)}", _na_note(r, result)])
    if not rows:
        return []
    return [("h2", "Every method's recommendation"),
            ("p", "Compute-optimal parameters N*, tokens D* and loss L* per target budget and "
                  "method, with 95% intervals (how they were made: next section). Every run "
                  "enters these fits, the back-test's held-out runs included."),
            ("table", ["target FLOPs", "method", "N*", "D*", "L*", "why n/a"], rows)]


def interval_blocks(result) -> list:
    """What each interval resamples, how many resamples, and how often it covers a truth."""
    n = result.n_bootstrap
    if n == 0:
        return [("h2", "Intervals"), ("p", "None: the fit ran with --bootstrap 0.")]
    par, iso = result.parametric, result.isoflop
    lines = []
    if par.fittable and par.samples is not None:
        bad = len(par.samples) - len(par.form.finite_samples(par.samples))
        lines.append(f"Parametric law: runs are resampled with replacement (every evaluation "
                     f"of a drawn run comes along), {n} times; each resample is refitted from "
                     "the full fit and the best Chinchilla grid starts; the interval is the "
                     "2.5th-97.5th percentile of each constant and of N*, D*, L* at each "
                     f"target. {bad} resample(s) whose law overflowed are left out.")
    if iso.fittable:
        used = 0 if iso.samples is None else len(iso.samples)
        lines.append(f"IsoFLOP: runs are resampled with replacement within each budget (the "
                     f"budget grid is the design and stays fixed), {n} times; every parabola "
                     f"and the power law are refitted. {used} of {n} resamples were usable: a "
                     "budget whose resample holds fewer than 3 distinct sizes, or whose "
                     "minimum moves to the grid's edge, leaves that resample's power law, and "
                     "a resample left with fewer than 2 budgets is dropped. L* has no "
                     "interval: its frontier through the vertices is fitted once.")
    lines.append("Envelope: no intervals; it is one winning run per FLOP value, not "
                 "bootstrapped.")
    cover = ", ".join(f"{k} {100 * v:.0f}%" for k, v in COVERAGE.items())
    lines.append(f"Coverage, measured on a known law shaped like the demo (4 budgets x 4 "
                 f"sizes, 1% loss noise, {COVERAGE_SEEDS} seeds x {COVERAGE_RESAMPLES} "
                 f"resamples; python bench/coverage.py): the 95% intervals contained the truth "
                 f"in {cover} of seeds. The parametric intervals are, if anything, wide; the "
                 "IsoFLOP ones cover about 4 times in 5, so read them as roughly 80% intervals "
                 "on a grid this small.")
    return [("h2", "How the intervals were made"), ("ul", lines)]


def _forecast_cells(f, digits: int) -> list[str]:
    if not f.judged:
        return ["not judged", fmt(f.observed, digits), f.note]
    if f.error is None:
        return ["no finite forecast", fmt(f.observed, digits), "MISSED"]
    state = "held" if f.passed else "MISSED"
    return [fmt(f.predicted, digits), fmt(f.observed, digits),
            f"{100 * f.error:+.{2 if f.quantity == 'loss' else 0}f}% ({state})"]


def held_out_text(bt) -> str:
    budgets = " and ".join(fmt(b.held_out_flops) for b in bt.budgets)
    runs = sum(b.n_held_out_runs for b in bt.budgets)
    if bt.held_out_by == BY_GROUP:
        how = (f"Held out the planner's held-out group: {len(bt.budgets)} budget(s), {budgets} "
               f"FLOPs ({runs} runs).")
    elif len(bt.budgets) == 1:
        how = (f"Held out the largest budget, {budgets} FLOPs ({runs} runs; the table has no "
               "held-out group).")
    else:
        how = (f"Held out the largest budgets, {budgets} FLOPs ({runs} runs; the table has no "
               "held-out group, and the largest budget whose own N* can be measured and every "
               "budget above it are held out).")
    return (f"{how} Every method was fitted on the {bt.n_train_budgets} other budgets and each "
            "held-out budget was forecast and judged on its own. The headline fit (every other "
            "section) uses every run, the held-out ones included.")


def backtest_blocks(result) -> list:
    bt = result.backtest
    if not bt.fittable:
        return [("h2", "Back-test"), ("p", f"Not fittable: {bt.reason}.")]
    rows = []
    for b in bt.budgets:
        for method, check in b.checks.items():
            rows.append([fmt(b.held_out_flops), method, *_forecast_cells(check.loss, 4),
                         *_forecast_cells(check.params, 3)])
    return [("h2", "Back-test"), ("p", held_out_text(bt)),
            ("p", f"Each method forecasts the lowest loss at a held-out budget and the N* "
                  f"that reaches it. Thresholds: loss within {100 * bt.threshold:.0f}%, N* "
                  f"within {100 * bt.params_threshold:.0f}% (--params-threshold); the measured "
                  "N* is the held-out budget's own parabola vertex. A method's back-test held "
                  "when its loss and N* forecasts were each judged and held wherever judged; "
                  "held where it could be judged when one of them could not be judged; MISSED "
                  "when a judged forecast missed."),
            ("table", ["held-out FLOPs", "method", "loss forecast", "measured", "loss error",
                       "N* forecast", "measured N*", "N* error"], rows),
            ("p", backtest_verdict(bt))]


def backtest_verdict(bt) -> str:
    """'Back-test of the headline method (isoflop): held: N* +23% ...; MISSED by the other
    methods: parametric N* +46% ...': the headline's words, and only forecasts that missed."""
    summaries = bt.methods
    head = summaries[bt.method]
    text = f"Back-test of the headline method ({bt.method}): {tier_word(head)}: {miss_text(head)}."
    missed = [f"{m} {missed_text(s)}" for m, s in summaries.items()
              if m != bt.method and missed_text(s)]
    if missed:
        text += " MISSED by the other methods: " + "; ".join(missed) + "."
    caveats = [f"at {fmt(b.held_out_flops)} FLOPs: {b.caveat}" for b in bt.budgets if b.caveat]
    if caveats:
        text += (" The measured N* is uncertain " + "; ".join(caveats) + ": its N* verdicts "
                 "are given with that caveat.")
    return text


def missed_text(summary: dict) -> str:
    """The forecasts of a method_summary that missed ('N* +46% at 1e+21 FLOPs (threshold
    25%)'), or '' when none did."""
    out = []
    for key, name, digits in (("params", "N*", 0), ("loss", "loss", 2)):
        f = summary[key]
        if f["judged"] and f["passed"] is False:
            where = f"at {fmt(f.get('held_out_flops'))} FLOPs"
            out.append(f"{name} {100 * f['error']:+.{digits}f}% {where} (threshold "
                       f"{100 * f['threshold']:.0f}%)" if f["error"] is not None
                       else f"{name}: no finite forecast {where}")
    return "; ".join(out)
