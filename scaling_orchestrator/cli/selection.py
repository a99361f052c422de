"""`scaling select`: adaptive selection over a pool of finished runs (analysis/design/pool.py),
then the fit of the chosen runs; mounted by the main CLI beside fit, report and predict
(cli/analysis.py, whose flag types and error guard it shares)."""

from __future__ import annotations

import argparse

from scaling_orchestrator.analysis.design.law_pick import auto_forms
from scaling_orchestrator.analysis.design.pool import (
    COST_EXPONENT,
    chosen_table,
    read_pool,
    select_pool,
    selection_dict,
)
from scaling_orchestrator.analysis.laws.choice import AUTO
from scaling_orchestrator.analysis.laws.registry import forms
from scaling_orchestrator.analysis.numerics import write_json
from scaling_orchestrator.analysis.options import Columns, FitOptions
from scaling_orchestrator.analysis.pipeline import fit
from scaling_orchestrator.cli.analysis import fraction, guard, positive_float, say_law_failure


def add_select_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "select",
        help="choose runs from an existing pool adaptively and fit them",
        description="Adaptive selection over a table of finished runs: a run's loss is read "
        "only once it is chosen; rounds add the runs that narrow N*(C)'s 95% "
        "interval and the loss forecast at C most per cost^X until the budget is spent "
        "(or, with --stop-at-tolerance, N*'s interval is within x/÷ tolerance). "
        "OUT is a `scaling fit --json` of the chosen runs plus "
        '"selection" (each row\'s round and reason).',
    )
    p.add_argument("pool", metavar="POOL", help="Parquet / Arrow / CSV table of runs")
    p.add_argument("--params", required=True, metavar="COL", help="parameter-count column")
    p.add_argument(
        "--tokens",
        default="tokens",
        metavar="COL",
        help="training-tokens column (default: tokens; with --flops and no such column, D = C / (6 N))",
    )
    p.add_argument("--loss", required=True, metavar="COL", help="final-loss column, nats/token")
    p.add_argument("--flops", metavar="COL", help="training-FLOPs column, each run's cost (default: 6 N D)")
    p.add_argument(
        "--budget-fraction",
        type=fraction,
        required=True,
        metavar="F",
        help="share of the pool's total FLOPs the selection may spend (0.1)",
    )
    p.add_argument(
        "--target-flops",
        type=positive_float,
        required=True,
        metavar="C",
        help="the budget whose N* the selection pins down; above every pool run",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.25,
        metavar="X",
        help="N*'s 95%% interval within x/÷ X (hi/lo <= X^2) is what --stop-at-tolerance stops at "
        "and each round reports; default 1.25",
    )
    p.add_argument(
        "--law",
        default=AUTO,
        choices=(AUTO, *(n for n, f in forms().items() if not f.required_columns)),
        help="the law each round plans with and the chosen runs are fitted with; auto (default): "
        f"each round, the one of {', '.join(auto_forms())} that best forecasts the largest budget "
        "chosen so far from the others (farseer only when named: minutes a fit)",
    )
    p.add_argument(
        "--stop-at-tolerance",
        action="store_true",
        help="stop once N*'s interval is within --tolerance at two rounds in a row "
        "(default: keep choosing until --budget-fraction is spent)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=4,
        metavar="K",
        help="runs added per round, at least (and a quarter of those chosen)",
    )
    p.add_argument(
        "--cost-exponent",
        type=float,
        default=COST_EXPONENT,
        metavar="X",
        help=f"rank runs by uncertainty removed / cost^X: 0 the most informative run the budget "
        f"allows, 1 per FLOP, 0.4 arXiv 2604.22753's (default {COST_EXPONENT:g})",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap resamples, per round and for the final fit (default 200)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True, metavar="OUT", help="write the fit and selection")
    p.set_defaults(func=run_select)
    return p


def run_select(args) -> int:
    return guard(_run_select, args, "select")


def _say_round(round_, proposal, law: str) -> None:
    a = proposal.answer
    print(f"round {round_}: {a.n_points} runs, {law} law, N* {a.params:.3g} "
          f"[{a.params_ci[0]:.3g}, {a.params_ci[1]:.3g}], +{len(proposal.choices)} runs")


def _run_select(args) -> int:
    for flag, value, ok, allowed in (
        ("--budget-fraction", args.budget_fraction, args.budget_fraction <= 1, "at most 1"),
        ("--tolerance", args.tolerance, args.tolerance > 1, "> 1"),
        ("--batch", args.batch, args.batch >= 1, ">= 1"),
        ("--bootstrap", args.bootstrap, args.bootstrap >= 2, ">= 2"),
        ("--cost-exponent", args.cost_exponent, 0 <= args.cost_exponent <= 1, "in [0, 1]"),
    ):
        if not ok:
            raise ValueError(f"{flag} {value:g}: must be {allowed}")
    pool, table_rows = read_pool(args.pool, params=args.params, tokens=args.tokens, loss=args.loss,
                                 flops=args.flops)
    selection = select_pool(pool, target_flops=args.target_flops,
                            budget_flops=args.budget_fraction * pool.total_flops, tolerance=args.tolerance,
                            batch=args.batch, law=args.law, n_bootstrap=args.bootstrap, seed=args.seed,
                            cost_exponent=args.cost_exponent, stop_at_tolerance=args.stop_at_tolerance,
                            on_round=_say_round)
    result = fit(
        chosen_table(pool, selection),
        Columns(loss="loss", run="run"),
        FitOptions(target_flops=(args.target_flops,), law=selection.law, n_bootstrap=args.bootstrap,
                   seed=args.seed),
    )
    say_law_failure(result, args.law, "select")
    out = result.to_dict()
    out["selection"] = selection_dict(pool, selection, table_rows, source=str(args.pool),
                                      target_flops=args.target_flops, tolerance=args.tolerance,
                                      budget_fraction=args.budget_fraction)
    write_json(args.json, out)
    print(f"{selection.message}")
    print(
        f"chose {len(selection.rows)} of {len(pool)} runs, {selection.spent_flops:.3g} of "
        f"{selection.budget_flops:.3g} FLOPs; wrote {args.json}"
    )
    return 0
