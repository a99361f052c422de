"""The demo's question answered twice: the grid demo (a cosine run from scratch per point) and
examples/branches.yaml (constant-LR trunks with cooldown branches), side by side.

Each study runs through run_plan on a local Ray (as `scaling demo` does; a folder that holds a
finished study is reused, its wall read back from the run that made it), is fitted with
bootstrap intervals, and prints what it cost and what it answered:

- FLOPs spent, from the rows: every trial's last `flops` less what its trunk had spent at its
  branch point (branch_tokens x flops_per_token), so a trunk's share is counted once;
- wall seconds of the run;
- the back-test on the held-out budget: each method's loss and N* error (fitted without it);
- the 95% interval of the N* exponent a, per method, and of N* at 10x the largest budget
  (the headline method's).

    python bench/branches_study.py [--results results/bench] [--bootstrap 1000]

Headline lines: `FLOPs branches/grid: 0.60x`, `a interval width branches/grid (METHOD): ...`,
`N* at 10x interval width branches/grid: ...` (widths as hi/lo ratios for N*, hi - lo for a).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.analysis import FitOptions, fit  # noqa: E402
from scaling_orchestrator.analysis.data.load import load_table  # noqa: E402
from scaling_orchestrator.cli.demo import build_plan, demo_spec_path  # noqa: E402
from scaling_orchestrator.orchestrator.execution.run import run_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {"grid": demo_spec_path("grid"), "branches": ROOT / "examples" / "branches.yaml"}
WALL_FILE = "_bench_wall.json"  # "_": Parquet readers of the folder skip it


def run_study(name: str, results: Path) -> float:
    """Run (or finish) the study; the wall seconds of the run that finished it."""
    plan = build_plan(str(results), str(STUDIES[name]))
    wall_file = results / WALL_FILE
    summary = run_plan(plan, str(results), progress=False)
    if summary.completed or not wall_file.exists():
        wall_file.write_text(
            json.dumps({"wall_seconds": summary.wall_seconds, "completed": len(summary.completed)})
        )
    if summary.failed:
        raise SystemExit(f"{name}: {len(summary.failed)} trials failed: {summary.failures}")
    return json.loads(wall_file.read_text())["wall_seconds"]


def spent_flops(results: Path) -> float:
    """Sum over trials of the last row's flops less the trunk's share at the branch point."""
    rows = load_table(str(results)).to_pylist()
    last = {}
    for r in rows:
        if r["trial_id"] not in last or r["step"] > last[r["trial_id"]]["step"]:
            last[r["trial_id"]] = r
    return sum(r["flops"] - r["branch_tokens"] * r["flops_per_token"] for r in last.values())


def figures(name: str, results: Path, n_bootstrap: int) -> dict:
    wall = run_study(name, results)
    result = fit(str(results), options=FitOptions(n_bootstrap=n_bootstrap)).to_dict()
    largest = max(result["data"]["budgets"])
    headline = min(result["headline"], key=lambda h: abs(h["flops"] / (10 * largest) - 1))
    backtest = result["backtest"]
    return {
        "flops": spent_flops(results),
        "wall": wall,
        "points": result["data"]["n_final_points"],
        "a": {m: (v["value"], v["ci95"]) for m, v in result["disagreement"]["a"]["methods"].items()},
        "n_star": (headline["method"], headline["flops"], headline["params"], headline["ci95"]["params"]),
        "backtest": backtest.get("budgets", [{}])[-1].get("methods", {})
        if backtest.get("fittable")
        else backtest.get("reason", "not fittable"),
    }


def print_study(name: str, f: dict) -> None:
    print(f"{name}: {f['flops']:.3e} FLOPs spent, {f['wall']:.0f} s wall, {f['points']} fit points")
    if isinstance(f["backtest"], str):
        print(f"  back-test: {f['backtest']}")
    for method, check in (f["backtest"] if isinstance(f["backtest"], dict) else {}).items():
        print(
            f"  back-test {method}: loss {_verdict(check.get('loss', {}))}, "
            f"N* {_verdict(check.get('params', {}))}"
        )
    for method, (value, ci) in f["a"].items():
        print(f"  a ({method}): {value:.3f}, 95% {_interval(ci, '.3f')}")
    method, flops, params, ci = f["n_star"]
    print(f"  N* at {flops:.3g} FLOPs ({method}): {params:.3g}, 95% {_interval(ci, '.3g')}")


def _verdict(check: dict) -> str:
    """'+2.97% (held)' / '+62% (missed)' / 'not judged'."""
    if not check.get("judged"):
        return "not judged"
    return f"{check['error']:+.2%} ({'held' if check['passed'] else 'missed'})"


def _interval(ci, spec: str) -> str:
    return f"[{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/bench", help="parent folder of grid/ and branches/")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    start = time.perf_counter()
    out = {name: figures(name, Path(args.results, name), args.bootstrap) for name in STUDIES}
    for name, f in out.items():
        print_study(name, f)
    grid, branches = out["grid"], out["branches"]
    print(f"FLOPs branches/grid: {branches['flops'] / grid['flops']:.2f}x")
    print(f"wall branches/grid: {branches['wall'] / grid['wall']:.2f}x")
    for method in sorted(set(grid["a"]) & set(branches["a"])):
        widths = [f["a"][method][1] and f["a"][method][1][1] - f["a"][method][1][0] for f in (branches, grid)]
        if all(widths):
            print(f"a interval width branches/grid ({method}): {widths[0] / widths[1]:.2f}x")
    widths = [f["n_star"][3] and f["n_star"][3][1] / f["n_star"][3][0] for f in (branches, grid)]
    if all(widths):
        print(
            f"N* at 10x interval width branches/grid (hi/lo {widths[0]:.2f} vs {widths[1]:.2f}): "
            f"{(widths[0] - 1) / (widths[1] - 1):.2f}x"
        )
    print(f"bench: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
