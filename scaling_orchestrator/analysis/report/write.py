"""report.md, one self-contained report.html, the PNGs and fit.json from a FitResult.

The report is a list of blocks (heading, paragraph, table, image; report/render.py
renders them as Markdown and HTML). Text blocks read the FitResult's typed pieces; the figures
read its to_dict() (the numbers in fit.json) and its points.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scaling_orchestrator.analysis.judge.headline import span
from scaling_orchestrator.analysis.judge.warnings import WIDE_SPAN
from scaling_orchestrator.analysis.methods.hparam_search import NO_ROWS
from scaling_orchestrator.analysis.numerics import quiet_numerics, write_json
from scaling_orchestrator.analysis.report.curves import CAPTION as CURVES_CAPTION
from scaling_orchestrator.analysis.report.curves import plot_curves, spike_blocks
from scaling_orchestrator.analysis.report.render import to_html, to_markdown
from scaling_orchestrator.analysis.report.summary import fmt, fmt_ci
from scaling_orchestrator.analysis.report.text import (
    backtest_blocks,
    headline_blocks,
    interval_blocks,
    recommendation_blocks,
    title_blocks,
)

CAPTIONS = {
    "isoflop": "IsoFLOP profiles with the window parabolas and their minima",
    "optimal": "N*(C) and D*(C) per method with bootstrap 95% bands",
    "parametric": "Parametric fit against the data, and its residuals against N and D",
    "backtest": "Back-test: each held-out budget's runs, the parametric law fitted without "
                "them, and every method's N* and loss forecasts against what was measured",
    "lr_law": "Loss against peak learning rate per size with the window parabolas (left); "
              "lr*(N) with its bootstrap 95% band (right)",
    "batch_law": "Loss against batch tokens per size (best lr at each batch) with the window "
                 "parabolas (left); B*(C) with its bootstrap 95% band (right)",
    "curves": CURVES_CAPTION,
}
# A fitted scale (Kaplan's N_c, D_c) this far beyond the data is a number the data cannot place:
# Kaplan et al. 2020 fit N_c = 8.8e13 with models up to 1.5e9 (6e4x), so 1e6x leaves room.
FAR_SCALE = 1e6
HPARAM_LAWS = (("lr_law", "lr", "Learning-rate law lr*(N) = c N^p", "params"),
               ("batch_law", "batch_tokens", "Batch-size law B*(C) = c C^p", "flops"))


def _unfit(section) -> str:
    return f"Not fittable: {section.reason or 'unknown reason'}."


def data_blocks(result) -> list:
    d = result.data
    span = f" ({fmt(min(d.budgets))} to {fmt(max(d.budgets))} FLOPs)" if d.budgets else ""
    hp = f"; {d.n_hparam_trials} hparam trials" if d.n_hparam_trials else ""
    blocks = [("h2", "Data"), ("p", (
        f"{d.n_final_points} final points from {d.n_runs} runs over {d.n_budgets} "
        f"budgets{span}; source {d.source or 'in memory'}; training curves: "
        f"{fmt(d.training_curves)}{hp}."))]
    if d.derived:
        blocks.append(("p", f"Derived, not read: {'; '.join(d.derived)} (C = 6ND)."))
    if d.excluded:
        blocks.append(("table", ["excluded because", "rows"],
                       [[k, str(v)] for k, v in sorted(d.excluded.items())]))
    for status, ids in sorted(d.excluded_trials.items()):
        blocks.append(("p", f"{len(ids)} {status} trial(s) excluded: {', '.join(ids)}."))
    if not d.excluded and not d.excluded_trials:
        blocks.append(("p", "No rows were excluded."))
    return blocks


def parametric_blocks(result) -> list:
    par = result.parametric
    title = par.form.formula if par.fittable else "L(N, D) = E + A/N^alpha + B/D^beta"
    blocks = [("h2", f"Parametric law {title}")]
    if not par.fittable:
        return blocks + [("p", _unfit(par))]
    constants = {**par.law.params(), **par.exponent_keys}
    blocks.append(("table", ["parameter", "value", "95% interval", "note"],
                   [[k, fmt(constants[k], 4), fmt_ci(par.ci95.get(k), 4),
                     _span_note(par.ci95.get(k))] for k in dict.fromkeys((*par.form.constants, "a", "b"))]))
    blocks.append(("p", f"{constants.get('n_points')} points, summed Huber "
                        f"{fmt(constants.get('objective'))}, converged: "
                        f"{fmt(constants.get('converged'))}. Form: {par.form.citation}."))
    return blocks + law_choice_blocks(result.law)


def law_choice_blocks(choice) -> list:
    """The forms side by side on the held-out slice, when the form was chosen (--law auto)."""
    if choice is None or not choice.candidates:
        return []
    rows = [[c.name + (" (chosen)" if c.name == choice.name else ""),
             "" if c.held_out_rel_error is None else f"{100 * c.held_out_rel_error:.2f}%",
             fmt(c.r2, 3) if c.r2 is not None else "", c.skipped or ""]
            for c in choice.candidates]
    return [("p", f"Law form chosen by {choice.chosen_by}:"),
            ("table", ["form", "held-out mean |rel. error|", "held-out R^2", "skipped"], rows)]


def isoflop_blocks(result) -> list:
    iso = result.isoflop
    blocks = [("h2", "IsoFLOP (Approach 2)")]
    if not iso.fittable:
        return blocks + [("p", _unfit(iso))]
    blocks.append(("p", f"N* = {fmt(iso.k_params)} C^{fmt(iso.a, 4)} "
                        f"(95% {fmt_ci(iso.ci95.get('a'))}), D* = {fmt(iso.k_tokens)} "
                        f"C^{fmt(iso.b, 4)} (95% {fmt_ci(iso.ci95.get('b'))}); "
                        f"{window_text(iso)}; {len(iso.interior)} interior budgets enter the "
                        "power law (an edge budget's minimum lies outside its grid)."))
    blocks.append(("table", ["budget FLOPs", "points", "sizes in parabola", "N*", "D*", "L*",
                             "edge", "note"],
                   [[fmt(b.flops), str(b.n_points), str(b.window) if b.fittable else "",
                     fmt(b.params_opt), fmt(b.tokens_opt), fmt(b.loss_opt, 4), fmt(b.edge),
                     b.reason] for b in iso.budgets]))
    return blocks


def window_text(iso) -> str:
    """The window actually used: 'parabola through all 4 sizes of each budget (window 5)'."""
    used = sorted({b.window for b in iso.budgets if b.fittable})
    sizes = " or ".join(map(str, used))
    if used and max(used) < iso.window:
        return (f"each budget's parabola runs through all of its {sizes} sizes (the window "
                f"is {iso.window}: every budget has fewer)")
    return (f"each budget's parabola runs through the {sizes} sizes nearest its lowest loss "
            f"(window {iso.window})")


def method_blocks(result) -> list:
    env = result.envelope
    blocks = parametric_blocks(result) + isoflop_blocks(result)
    blocks += [("h2", "Training-curve envelope (Approach 1)"),
               ("p", f"N* ~ C^{fmt(env.a, 4)}, D* ~ C^{fmt(env.b, 4)} from "
                     f"{int(env.used.sum())} envelope points over {env.n_runs} runs."
                if env.fittable else _unfit(env))]
    return blocks + kaplan_blocks(result) + disagreement_blocks(result)


def _span_note(ci) -> str:
    """'not identified: spans 1.7e+127x' for an interval wider than WIDE_SPAN."""
    ratio = span(ci)
    if ratio is None or ratio <= WIDE_SPAN:
        return ""
    return "not identified: " + ("no lower bound" if ratio == float("inf")
                                 else f"spans {fmt(ratio, 2)}x")


def kaplan_blocks(result) -> list:
    """Kaplan's single-variable laws, with a note where a scale lies far beyond the data."""
    k, rows = result.kaplan, []
    points = result.points
    largest = {a: float(np.max(getattr(points, a))) if points is not None else math.inf
               for a in ("params", "tokens")}
    for law, label, scale, top, what in (
            (k.L_of_N, "L(N) = (N_c/N)^alpha", "N_c", largest["params"], "model"),
            (k.L_of_D, "L(D) = (D_c/D)^alpha", "D_c", largest["tokens"], "token count")):
        if not law.fittable:
            rows.append([label, _unfit(law), ""])
            continue
        note = "" if law.x_c <= FAR_SCALE * top else (
            f"{scale} is {fmt(law.x_c / top, 2)}x the largest {what} trained: a scale these "
            "runs cannot place (no loss floor in this form); read alpha only")
        rows.append([label, f"alpha = {fmt(law.exponent, 4)}, {scale} = {fmt(law.x_c)}", note])
    f = k.frontier
    rows.append(["L*(C) = E + A C^-alpha", f"E = {fmt(f.E, 4)}, A = {fmt(f.A)}, "
                 f"alpha = {fmt(f.alpha, 4)}" if f.fittable else _unfit(f), ""])
    return [("h2", "Kaplan et al. 2020 laws"), ("table", ["law", "fit", "note"], rows)]


def disagreement_blocks(result) -> list:
    dis, rows = result.disagreement, []
    for name, comparison in (("a", result.disagreement.a), ("b", result.disagreement.b)):
        for method, (value, ci) in comparison.methods.items():
            rows.append([name, method, fmt(value, 4), fmt_ci(ci)])
    verdict = ("The exponents DISAGREE: their 95% intervals do not overlap."
               if dis.flag else "The exponents' 95% intervals overlap (or fewer than two have "
                                "one). Whether N* and L* at the targets agree is in the "
                                "warnings at the top.")
    return [("h2", "Exponents across approaches"),
            ("table", ["exponent", "method", "value", "95% interval"], rows), ("p", verdict)]


def hparam_blocks(result) -> list:
    """lr*(N) and B*(C) sections, only when the source had hparam trials."""
    if result.lr_law.reason == NO_ROWS:
        return []
    blocks = []
    for (key, name, title, x), law in zip(HPARAM_LAWS, (result.lr_law, result.batch_law)):
        blocks.append(("h2", title))
        if law.fittable:
            lo, hi = law.x_range
            blocks.append(("p", f"{name}* = {fmt(law.coefficient, 4)} "
                                f"{'N' if x == 'params' else 'C'}^{fmt(law.exponent, 4)}; "
                                f"exponent 95% {fmt_ci(law.ci95.get('exponent'))}, coefficient "
                                f"95% {fmt_ci(law.ci95.get('coefficient'))}; fitted on "
                                f"{len(law.used)} interior sizes, {x} {fmt(lo)} to {fmt(hi)}. "
                                f"Parabola in log {name} through the points nearest each size's "
                                "best; edge sizes (best at the grid's end) are left out."))
        else:
            blocks.append(("p", _unfit(law)))
        if law.optima:
            blocks.append(("table", ["size", x, "trials", "diverged", f"{name}*", "95% interval",
                                     "L*", "edge", "in law", "note"], _size_rows(law, x)))
        if law.excluded:
            blocks.append(("p", "Trials: " + ", ".join(f"{k} {v}" for k, v in
                                                       sorted(law.excluded.items()))
                                + " (diverged = loss +inf: they bound the bowl, not fitted)."))
    return blocks


def _size_rows(law, x: str) -> list[list[str]]:
    used = {o.label for o in law.used}
    return [[o.label, fmt(getattr(o, x)), str(o.n_trials), str(o.n_diverged), fmt(o.value_opt),
             fmt_ci(list(o.ci95) or None), fmt(o.loss_opt, 4), fmt(o.edge),
             fmt(o.label in used) if law.fittable else "n/a", o.reason] for o in law.optima]


def build_blocks(result, plots: dict[str, Path]) -> list:
    """The answer and its warnings first, then the evidence: data, every method, intervals,
    back-test, hyperparameter laws, figures."""
    blocks = title_blocks(result) + headline_blocks(result)
    blocks += data_blocks(result) + recommendation_blocks(result) + interval_blocks(result)
    blocks += method_blocks(result) + backtest_blocks(result) + hparam_blocks(result)
    blocks += spike_blocks(result.data.source)  # the curve table's, when the source has one
    blocks += [("h2", "Figures")] + [("img", path, CAPTIONS[name]) for name, path in plots.items()]
    return blocks


def write_report(result, out_dir) -> dict[str, Path]:
    """Write report.md, report.html, the PNGs and fit.json into out_dir; name -> path."""
    from scaling_orchestrator.analysis.report.plots import make_plots  # matplotlib: only for a report

    out_dir = Path(out_dir)
    plain = result.to_dict()
    with quiet_numerics():   # a degenerate law overflows where it is drawn; the text says so
        plots = make_plots(plain, result.points, out_dir)
        curves = plot_curves(result.data.source, out_dir / "curves.png")  # None: the source has none
    if curves is not None:
        plots["curves"] = curves
    blocks = build_blocks(result, plots)
    md, page, fit_json = out_dir / "report.md", out_dir / "report.html", out_dir / "fit.json"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks), encoding="utf-8")
    write_json(fit_json, plain)
    return {"markdown": md, "html": page, "json": fit_json, **plots}
