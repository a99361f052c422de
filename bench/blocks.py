"""The GPT-2 block against the llama block on the demo's study, side by side.

    python bench/blocks.py RESULTS_GPT2 RESULTS_LLAMA   # two finished studies, e.g. results/demo and
                                                        # results/demo-llama (examples/demo-llama.yaml)
    python bench/blocks.py --quick [--budgets 3] [--sizes 3] [--out bench-blocks]
                                                        # runs both demo studies cut down, then compares

Per budget: each block's best final val_loss (nats per token) and which block is lower; per block:
the IsoFLOP exponent a (N* ~ C^a, scaling_orchestrator.analysis.fit, no bootstrap) and the
parametric alpha and beta. --quick cuts both studies to the demo's 3 fitted budgets x 3 sizes (no
held-out budget), runs them on local Ray one after the other and prints each study's wall time:
figures from the cut-down study, not from the demo. The last line is the headline:
`better block: llama at 3/3 budgets; a gpt2 0.51, llama 0.47`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling_orchestrator.analysis import FitOptions, fit  # noqa: E402
from scaling_orchestrator.orchestrator.store.results import Store  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = {"gpt2": os.path.join(ROOT, "scaling_orchestrator", "cli", "demo.yaml"),
         "llama": os.path.join(ROOT, "examples", "demo-llama.yaml")}


def best_losses(results: str) -> dict[float, float]:
    """budget_flops -> the lowest final val_loss among the study's ok trials at that budget."""
    best: dict[float, float] = {}
    for row in Store(results, create=False).read_table().to_pylist():
        if row["final"] and row["status"] == "ok":
            budget = float(row["budget_flops"])
            best[budget] = min(best.get(budget, float("inf")), row["val_loss"])
    return best


def exponents(results: str) -> dict[str, float | str]:
    """IsoFLOP a and parametric alpha, beta of a study (a reason in place of a fit that failed)."""
    result = fit(results, options=FitOptions(n_bootstrap=0)).to_dict()
    iso, par = result.get("isoflop") or {}, result.get("parametric") or {}
    return {"a": iso.get("a", iso.get("reason", "no fit")), "alpha": par.get("alpha", float("nan")),
            "beta": par.get("beta", float("nan"))}


def run_quick(out: str, budgets: int = 3, sizes: int = 3) -> dict[str, tuple[str, float]]:
    """Both demo studies at their first `budgets` budgets x `sizes` sizes on local Ray:
    {block: (results, wall seconds)}."""
    # Ray and the planner load only for --quick: comparing finished folders needs neither
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.execution.run import run_plan
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

    runs = {}
    for block, spec in SPECS.items():
        sweep = load_sweep(spec)
        sweep = dataclasses.replace(sweep, budgets_flops=sweep.budgets_flops[:budgets],
                                    held_out_budgets_flops=(), sizes_per_budget=sizes)
        results = os.path.join(out, block)
        start = time.perf_counter()
        summary = run_plan(make_plan(sweep), results, progress=False)
        runs[block] = (results, time.perf_counter() - start)
        print(f"{block}: {len(summary.completed)} trials in {runs[block][1]:.0f} s wall -> {results}",
              flush=True)
    return runs


def report(folders: dict[str, str]) -> None:
    losses = {block: best_losses(path) for block, path in folders.items()}
    budgets = sorted(set.intersection(*(set(v) for v in losses.values())))
    wins = {block: 0 for block in folders}
    print(f"{'budget':>9}  " + "  ".join(f"{b:>7}" for b in folders) + "  better")
    for budget in budgets:
        row = {block: losses[block][budget] for block in folders}
        better = min(row, key=row.get)
        wins[better] += 1
        print(f"{budget:9.3g}  " + "  ".join(f"{row[b]:7.4f}" for b in folders) + f"  {better}")
    fits = {block: exponents(path) for block, path in folders.items()}
    for block, f in fits.items():
        a = _number(f["a"]) if not isinstance(f["a"], str) else f"- ({f['a']})"
        print(f"{block}: isoflop a {a}, parametric alpha {_number(f['alpha'])} beta {_number(f['beta'])}")
    leader = max(wins, key=wins.get)
    a_text = ", ".join(f"{b} {_number(f['a'])}" for b, f in fits.items())
    print(f"better block: {leader} at {wins[leader]}/{len(budgets)} budgets; a {a_text}")


def _number(x) -> str:
    """3 decimals, or "-" for a fit that gave none (a reason, or null for NaN)."""
    return f"{x:.3f}" if isinstance(x, (int, float)) and x == x else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="*", metavar="RESULTS", help="gpt2 study, then llama study")
    ap.add_argument("--quick", action="store_true", help="run both demo studies cut down first")
    ap.add_argument("--out", default="bench-blocks", help="--quick: where the two studies go")
    ap.add_argument("--budgets", type=int, default=3, help="--quick: the demo's first N budgets")
    ap.add_argument("--sizes", type=int, default=3, help="--quick: sizes per budget (>= 3)")
    args = ap.parse_args()
    if args.quick:
        runs = run_quick(args.out, args.budgets, args.sizes)
        folders = {block: path for block, (path, _) in runs.items()}
        print("wall: " + ", ".join(f"{b} {w:.0f} s" for b, (_, w) in runs.items()) + " (cut-down studies)")
    elif len(args.results) == 2:
        folders = dict(zip(SPECS, args.results))
    else:
        ap.error("give two results folders (gpt2, llama) or --quick")
    report(folders)


if __name__ == "__main__":
    main()
