"""The text summary `scaling fit` prints, and the number formats the report shares with it.

Numbers keep 3 significant digits (4 for losses and exponents: a 0.1% loss difference is
2.131 vs 2.133); a value that is missing or not finite prints "n/a", as strict JSON writes it
null.
"""

from __future__ import annotations

import math

from analysis.backtest import BY_GROUP
from analysis.hparams import NO_ROWS


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}g}" if math.isfinite(x) else "n/a"
    return str(x)


def fmt_ci(ci, digits: int = 3) -> str:
    return "n/a" if not ci else f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _method_line(name: str, section) -> str:
    if not section.fittable:
        return f"{name}: not fittable: {section.reason}"
    ci = section.ci95
    return (f"{name}: a = {fmt(section.a, 4)} {fmt_ci(ci.get('a'))}, "
            f"b = {fmt(section.b, 4)} {fmt_ci(ci.get('b'))}")


def data_line(data) -> str:
    excluded = ", ".join(f"{k} {v}" for k, v in sorted(data.excluded.items())) or "none"
    hparams = f"; {data.n_hparam_trials} hparam trials" if data.n_hparam_trials else ""
    return (f"{data.source}: {data.n_final_points} points, {data.n_runs} runs, "
            f"{data.n_budgets} budgets; excluded: {excluded}{hparams}")


def backtest_lines(bt) -> list[str]:
    """One line per held-out budget; with the planner's group, which runs were used."""
    if not bt.fittable:
        return [f"back-test: not fittable: {bt.reason}"]
    lines = [f"back-test at C = {fmt(b.held_out_flops)}: predicted {fmt(b.predicted_loss, 4)}, "
             f"observed {fmt(b.observed_loss, 4)}, error {100 * b.rel_error:.2f}% -> "
             + ("passed" if b.passed else f"FAILED (threshold {100 * bt.threshold:.0f}%)")
             for b in bt.budgets]
    if bt.held_out_by == BY_GROUP:
        lines.append(f"  held out: the {len(bt.budgets)} budget(s) of the planner's held-out "
                     f"group, fitted on the {bt.n_train_budgets} others; every other fit here "
                     "uses every run")
    return lines


def hparam_lines(result) -> list[str]:
    """lr*(N) and B*(C) with 95% intervals, or why not; nothing when there are no hparam rows."""
    lines = []
    for law, label, x in ((result.lr_law, "lr*(N)", "N"),
                          (result.batch_law, "B*(C) batch_tokens", "C")):
        if law.reason == NO_ROWS:
            continue
        if not law.fittable:
            lines.append(f"{label}: not fittable: {law.reason}")
            continue
        lines.append(f"{label} = {fmt(law.coefficient, 4)} {x}^{fmt(law.exponent, 4)}, "
                     f"exponent {fmt_ci(law.ci95.get('exponent'))}, over {len(law.used)} sizes")
    return lines


def recommendation_lines(result) -> list[str]:
    lines = [f"{'target C':>10}  {'method':<10} {'N*':<28} {'D*':<28} L*"]
    for r in result.recommendations:
        if not r.fittable:
            lines.append(f"{fmt(r.flops):>10}  {r.method:<10} not fittable: {r.reason}")
            continue
        ci = r.ci95
        lines.append(f"{fmt(r.flops):>10}  {r.method:<10} "
                     f"{fmt(r.params) + ' ' + fmt_ci(ci.get('params')):<28} "
                     f"{fmt(r.tokens) + ' ' + fmt_ci(ci.get('tokens')):<28} "
                     f"{fmt(r.loss, 4)} {fmt_ci(ci.get('loss'), 4)}")
    return lines


def format_summary(result) -> str:
    """Data, fitted constants with 95% intervals, back-test, hparam laws, N*/D*/L* table."""
    lines = [data_line(result.data)]
    par = result.parametric
    if par.fittable:
        constants = par.law.params()
        lines.append(f"parametric {par.form.formula}:")
        lines += [f"  {k:<6}{fmt(constants[k], 4):>10}  {fmt_ci(par.ci95.get(k), 4)}"
                  for k in par.form.constants]
    lines.append(_method_line("parametric exponents", par))
    lines.append(_method_line("isoflop", result.isoflop))
    lines.append(_method_line("envelope", result.envelope))
    if result.disagreement.flag:
        lines.append("WARNING: the approaches' 95% intervals for a or b do not overlap")
    lines += backtest_lines(result.backtest) + hparam_lines(result)
    return "\n".join(lines + recommendation_lines(result))
