"""The text summary `scaling fit` prints, and the number formats the report shares with it.

Numbers keep 3 significant digits (4 for losses and exponents: a 0.1% loss difference is
2.131 vs 2.133); a value that is missing or not finite prints "n/a", as strict JSON writes it
null.
"""

from __future__ import annotations

import math

from scaling_orchestrator.analysis.judge.backtest import BY_GROUP
from scaling_orchestrator.analysis.judge.forecast import tier_word
from scaling_orchestrator.analysis.methods.hparam_search import NO_ROWS


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
    derived = f"; derived: {', '.join(data.derived)}" if data.derived else ""
    return (f"{data.source}: {data.n_final_points} points, {data.n_runs} runs, "
            f"{data.n_budgets} budgets; excluded: {excluded}{hparams}{derived}")


def forecast_text(f, digits: int) -> str:
    """'3.775 vs 3.765 measured (+0.26%, held)' or 'not judged: why'."""
    if not f.judged:
        return f"not judged: {f.note}"
    if f.error is None:
        return f"MISSED: no finite forecast ({f.note})"
    state = "held" if f.passed else f"MISSED, threshold {100 * f.threshold:.0f}%"
    return (f"{fmt(f.predicted, digits)} vs {fmt(f.observed, digits)} measured "
            f"({100 * f.error:+.{2 if f.quantity == 'loss' else 0}f}%, {state})")


def backtest_lines(bt) -> list[str]:
    """Per held-out budget, every method's loss and N* forecasts against what was measured."""
    if not bt.fittable:
        return [f"back-test: not fittable: {bt.reason}"]
    how = ("the planner's held-out group" if bt.held_out_by == BY_GROUP
           else "the largest budget (no held-out group)")
    lines = [f"back-test: held out {how}; every method fitted on the {bt.n_train_budgets} "
             f"other budgets (thresholds: loss {100 * bt.threshold:.0f}%, "
             f"N* {100 * bt.params_threshold:.0f}%)"]
    for b in bt.budgets:
        runs = f"{b.n_held_out_runs} run{'s' if b.n_held_out_runs != 1 else ''}"
        measured = (f"measured N* {fmt(b.observed_params)} from the {b.observed_params_from}"
                    if b.observed_params is not None else b.observed_params_from)
        caveat = f"; uncertain: {b.caveat}" if b.caveat else ""
        lines.append(f"  at C = {fmt(b.held_out_flops)} ({runs}; {measured}{caveat}):")
        lines += [f"    {m:<10} loss {forecast_text(c.loss, 4)}; N* {forecast_text(c.params, 3)}"
                  for m, c in b.checks.items()]
    lines.append(f"  -> back-test of the headline method ({bt.method}): "
                 f"{tier_word(bt.methods[bt.method])}")
    return lines


def headline_lines(result) -> list[str]:
    """The answer first: one recommendation per target, its verdict, then the warnings."""
    if not result.headline:
        return []
    first = result.headline[0]
    lines = [f"Recommendation ({first.method}: {first.why}):"]
    lines += [f"  {h.sentence()} [{h.verdict}]" for h in result.headline]
    if result.warnings:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in result.warnings]
    else:
        lines.append("Warnings: none.")
    return lines + [""]


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


def law_lines(choice) -> list[str]:
    """'law: farseer, chosen by ...' and each form's held-out error (auto only)."""
    if choice is None or not choice.candidates:
        return []
    scores = [f"{c.name} {100 * c.held_out_rel_error:.2f}% (R^2 {fmt(c.r2, 3)})"
              if c.skipped is None else f"{c.name} skipped: {c.skipped}"
              for c in choice.candidates]
    return [f"law: {choice.name}, chosen by {choice.chosen_by}"] + [f"  {s}" for s in scores]


def format_summary(result) -> str:
    """Data, fitted constants with 95% intervals, back-test, hparam laws, N*/D*/L* table."""
    lines = headline_lines(result) + [data_line(result.data)] + law_lines(result.law)
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
