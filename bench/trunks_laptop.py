"""A real laptop trunks study against the grid demo that asks the same question.

    scaling run examples/demo.yaml                  # the grid: results/demo (4.2e12 held out)
    scaling run examples/trunks.yaml                # trunks: results/trunks
    python bench/trunks_laptop.py [--grid DIR] [--trunks DIR] [--bootstrap 1000]

Both studies train real models on the same corpus, dial and recipe (examples/demo.yaml). The
trunks study is read by the curve method (docs/curves.md); both answers are judged on the same
runs: the demo's held-out trials at 4.2e12 FLOPs, which the trunks study never trained, are
appended to its rows, as bench/adaptive_laptop.py judges the adaptive study. Prints each study's
FLOPs (a branch's own steps only), wall time, the back-test at 4.2e12 per method, N*'s 95% interval there,
and the exponent a of N* = k C^a with its interval (the curve method's for the trunks study).
The goal (issue text): at most 0.5x the demo's FLOPs, N* within 25% and loss within 3% at the
held-out budget, and a's 95% interval at most 0.30 wide.
"""

from __future__ import annotations

import argparse
import os
import sys

import pyarrow.compute as pc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adaptive_laptop import describe, final_rows, spent, wall, with_held_out  # noqa: E402

from scaling_orchestrator.analysis.data.load import load_table  # noqa: E402
from scaling_orchestrator.analysis.data.schema import HELD_OUT  # noqa: E402


def own_flops(table) -> float:
    """FLOPs the study computed: a branch's final row counts its trunk's path too (its tokens
    start at 0), so only its steps after branch_tokens are its own."""
    rows = final_rows(table).to_pylist()
    return sum(r["flops"] * (1 - (r.get("branch_tokens") or 0) / r["tokens"]) if r.get("parent_trial_id")
               else r["flops"] for r in rows)


def exponent(name: str, result: dict, method: str) -> None:
    section = result.get(method) or {}
    lo_hi = (section.get("ci95") or {}).get("a")
    if section.get("a") is None:
        print(f"  {name} {method}: no exponent ({section.get('reason', 'not fitted')})")
    elif lo_hi:
        print(f"  {name} {method} a = {section['a']:.3f} [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}], "
              f"width {lo_hi[1] - lo_hi[0]:.2f}")
    else:
        print(f"  {name} {method} a = {section['a']:.3f} (no interval)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="results/demo")
    ap.add_argument("--trunks", default="results/trunks")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    grid, trunks = load_table(args.grid), load_table(args.trunks)
    held = set(
        grid.filter(pc.equal(pc.fill_null(grid.column("group"), ""), HELD_OUT)).column("trial_id").to_pylist()
    )
    g_wall, t_wall = wall(args.grid, held), wall(args.trunks, set())
    exponent("grid", describe("grid", grid, g_wall, args.bootstrap), "isoflop")
    judged = with_held_out(trunks, grid)
    result = describe("trunks", judged, t_wall, args.bootstrap, folder=args.trunks)
    for method in ("curve", "parametric"):
        exponent("trunks", result, method)
    everything = float(pc.sum(final_rows(grid).column("flops")).as_py())
    print(f"trunks FLOPs {own_flops(trunks):.3g} (a branch's own steps only): "
          f"{own_flops(trunks) / everything:.2f}x the demo's {everything:.3g} (held-out runs included), "
          f"{own_flops(trunks) / spent(grid):.2f}x its fitted trials' {spent(grid):.3g}")
    print(f"trunks / grid wall: {t_wall / g_wall:.2f}x")


if __name__ == "__main__":
    main()
