"""report.md, one self-contained report.html, the PNGs and fit.json from a FitResult.

The report is a list of blocks (heading, paragraph, table, image; analysis/report_render.py
renders them as Markdown and HTML). Text blocks read the FitResult's typed pieces; the figures
read its to_dict() (the numbers in fit.json) and its points.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.backtest import BY_GROUP
from analysis.hparams import NO_ROWS
from analysis.report_plots import make_plots
from analysis.report_render import to_html, to_markdown
from analysis.summary import fmt, fmt_ci

CAPTIONS = {
    "isoflop": "IsoFLOP profiles with the window parabolas and their minima",
    "optimal": "N*(C) and D*(C) per method with bootstrap 95% bands",
    "parametric": "Parametric fit against the data, and its residuals against N and D",
    "backtest": "Back-test: each held-out budget predicted by the law fitted without them",
    "lr_law": "Loss against peak learning rate per size with the window parabolas (left); "
              "lr*(N) with its bootstrap 95% band (right)",
    "batch_law": "Loss against batch tokens per size (best lr at each batch) with the window "
                 "parabolas (left); B*(C) with its bootstrap 95% band (right)",
}
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
    if d.excluded:
        blocks.append(("table", ["excluded because", "rows"],
                       [[k, str(v)] for k, v in sorted(d.excluded.items())]))
    for status, ids in sorted(d.excluded_trials.items()):
        blocks.append(("p", f"{len(ids)} {status} trial(s) excluded: {', '.join(ids)}."))
    if not d.excluded and not d.excluded_trials:
        blocks.append(("p", "No rows were excluded."))
    return blocks


def recommendation_blocks(result) -> list:
    rows = []
    for r in result.recommendations:
        if not r.fittable:
            rows.append([fmt(r.flops), r.method, "not fittable", "", "", r.reason])
            continue
        ci = r.ci95
        rows.append([fmt(r.flops), r.method, f"{fmt(r.params)} {fmt_ci(ci.get('params'))}",
                     f"{fmt(r.tokens)} {fmt_ci(ci.get('tokens'))}",
                     f"{fmt(r.loss, 4)} {fmt_ci(ci.get('loss'), 4)}", ""])
    if not rows:
        return [("h2", "Recommendation"), ("p", "No scaling rows: nothing to recommend.")]
    return [("h2", "Recommendation"),
            ("p", "Compute-optimal parameters N*, tokens D* and loss L* per target budget and "
                  "method, with bootstrap 95% intervals where estimated. Every run enters these "
                  "fits, the back-test's held-out runs included."),
            ("table", ["target FLOPs", "method", "N*", "D*", "L*", "note"], rows)]


def parametric_blocks(result) -> list:
    par = result.parametric
    title = par.form.formula if par.fittable else "L(N, D) = E + A/N^alpha + B/D^beta"
    blocks = [("h2", f"Parametric law {title}")]
    if not par.fittable:
        return blocks + [("p", _unfit(par))]
    constants = {**par.law.params(), "a": par.a, "b": par.b}
    blocks.append(("table", ["parameter", "value", "95% interval"],
                   [[k, fmt(constants[k], 4), fmt_ci(par.ci95.get(k), 4)]
                    for k in (*par.form.constants, "a", "b")]))
    blocks.append(("p", f"{constants.get('n_points')} points, summed Huber "
                        f"{fmt(constants.get('objective'))}, converged: "
                        f"{fmt(constants.get('converged'))}."))
    return blocks


def isoflop_blocks(result) -> list:
    iso = result.isoflop
    blocks = [("h2", "IsoFLOP (Approach 2)")]
    if not iso.fittable:
        return blocks + [("p", _unfit(iso))]
    blocks.append(("p", f"N* = {fmt(iso.k_params)} C^{fmt(iso.a, 4)} "
                        f"(95% {fmt_ci(iso.ci95.get('a'))}), D* = {fmt(iso.k_tokens)} "
                        f"C^{fmt(iso.b, 4)} (95% {fmt_ci(iso.ci95.get('b'))}); parabola through "
                        f"the {iso.window} points nearest each minimum, "
                        f"{len(iso.interior)} interior budgets."))
    blocks.append(("table", ["budget FLOPs", "points", "N*", "D*", "L*", "edge", "note"],
                   [[fmt(b.flops), str(b.n_points), fmt(b.params_opt), fmt(b.tokens_opt),
                     fmt(b.loss_opt, 4), fmt(b.edge), b.reason] for b in iso.budgets]))
    return blocks


def method_blocks(result) -> list:
    env = result.envelope
    blocks = parametric_blocks(result) + isoflop_blocks(result)
    blocks += [("h2", "Training-curve envelope (Approach 1)"),
               ("p", f"N* ~ C^{fmt(env.a, 4)}, D* ~ C^{fmt(env.b, 4)} from "
                     f"{int(env.used.sum())} envelope points over {env.n_runs} runs."
                if env.fittable else _unfit(env))]
    return blocks + kaplan_blocks(result) + disagreement_blocks(result)


def kaplan_blocks(result) -> list:
    k, rows = result.kaplan, []
    for law, label, scale in ((k.L_of_N, "L(N) = (N_c/N)^alpha", "N_c"),
                              (k.L_of_D, "L(D) = (D_c/D)^alpha", "D_c")):
        rows.append([label, f"alpha = {fmt(law.exponent, 4)}, {scale} = {fmt(law.x_c)}"
                     if law.fittable else _unfit(law)])
    f = k.frontier
    rows.append(["L*(C) = E + A C^-alpha", f"E = {fmt(f.E, 4)}, A = {fmt(f.A)}, "
                 f"alpha = {fmt(f.alpha, 4)}" if f.fittable else _unfit(f)])
    return [("h2", "Kaplan et al. 2020 laws"), ("table", ["law", "fit"], rows)]


def disagreement_blocks(result) -> list:
    dis, rows = result.disagreement, []
    for name, comparison in (("a", result.disagreement.a), ("b", result.disagreement.b)):
        for method, (value, ci) in comparison.methods.items():
            rows.append([name, method, fmt(value, 4), fmt_ci(ci)])
    verdict = ("The approaches DISAGREE: their 95% intervals do not overlap."
               if dis.flag else "No disagreement flagged (intervals overlap or too few).")
    return [("h2", "Exponents across approaches"),
            ("table", ["exponent", "method", "value", "95% interval"], rows), ("p", verdict)]


def _held_out_text(bt) -> str:
    budgets = " and ".join(fmt(b.held_out_flops) for b in bt.budgets)
    runs = sum(b.n_held_out_runs for b in bt.budgets)
    if bt.held_out_by == BY_GROUP:
        return (f"Held out the planner's held-out group: {len(bt.budgets)} budget(s), {budgets} "
                f"FLOPs ({runs} runs). The laws were fitted on the {bt.n_train_budgets} other "
                "budgets and each held-out budget was predicted and judged on its own. The "
                "headline fit (every section above) uses every run, the held-out ones included.")
    return (f"Held out the largest budget ({budgets} FLOPs, {runs} runs; the table has no "
            f"held-out group) and fitted the {bt.n_train_budgets} smaller ones. The headline "
            "fit (every section above) uses every run, this budget included.")


def backtest_blocks(result) -> list:
    bt = result.backtest
    if not bt.fittable:
        return [("h2", "Back-test"), ("p", _unfit(bt))]
    rows = [[fmt(b.held_out_flops), str(b.n_held_out_runs), fmt(b.predicted_loss, 4),
             fmt(b.observed_loss, 4), f"{100 * b.rel_error:.2f}%",
             "passed" if b.passed else "FAILED", fmt(b.predicted_params), fmt(b.observed_params),
             "n/a" if b.params_rel_error is None else f"{100 * b.params_rel_error:.1f}%",
             b.observed_params_from] for b in bt.budgets]
    threshold = f"{100 * bt.threshold:.0f}%"
    if bt.passed:
        worst = max(b.rel_error for b in bt.budgets)
        verdicts = [f"PASSED: predicted loss within {100 * worst:.2f}% of observed at every "
                    f"held-out budget (threshold {threshold})."]
    else:
        verdicts = [f"WARNING: the back-test error {100 * b.rel_error:.2f}% at "
                    f"{fmt(b.held_out_flops)} FLOPs EXCEEDS the {threshold} threshold; treat "
                    "extrapolated recommendations with caution."
                    for b in bt.budgets if not b.passed]
    return [("h2", "Back-test"), ("p", _held_out_text(bt)),
            ("table", ["held-out FLOPs", "runs", "predicted L", "observed L", "loss error",
                       "verdict", "IsoFLOP N* forecast", "observed N*", "N* error",
                       "observed N* from"], rows)] + [("p", v) for v in verdicts]


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
    blocks = [("h1", "Scaling-law fit report")]
    bt = result.backtest
    if bt.fittable:
        blocks += [("p", f"WARNING: back-test error {100 * b.rel_error:.2f}% at "
                         f"{fmt(b.held_out_flops)} FLOPs exceeds the {100 * bt.threshold:.0f}% "
                         "threshold.") for b in bt.budgets if not b.passed]
    blocks += data_blocks(result) + recommendation_blocks(result) + method_blocks(result)
    blocks += backtest_blocks(result) + hparam_blocks(result)
    blocks += [("h2", "Figures")] + [("img", path, CAPTIONS[name]) for name, path in plots.items()]
    return blocks


def write_report(result, out_dir) -> dict[str, Path]:
    """Write report.md, report.html, the PNGs and fit.json into out_dir; name -> path."""
    out_dir = Path(out_dir)
    plain = result.to_dict()
    plots = make_plots(plain, result.points, out_dir)
    blocks = build_blocks(result, plots)
    md, page, fit_json = out_dir / "report.md", out_dir / "report.html", out_dir / "fit.json"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks), encoding="utf-8")
    fit_json.write_text(json.dumps(plain, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return {"markdown": md, "html": page, "json": fit_json, **plots}
